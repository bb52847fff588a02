"""Right page in the top 5, and ingest time, on real documentation: ours against LangChain's tutorial pipeline.

For each dev set (tests/data/devsets: the folders as its README copies them from Debian's packages), in
one run on one machine:
- ours: `rag ingest FOLDER --index NEW` (a fresh index, the whole process timed), then
  `rag search --queries FILE --json --k 5`;
- LangChain: bench/langchain_real_docs.py in its own process (BSHTMLLoader or PyPDFium2Loader,
  RecursiveCharacterTextSplitter(1000, 200), the same MiniLM, FAISS; ingest timed inside it).
A question's hit counts when one of the 5 best chunks is on its expected page (path, and 1-based page for
PDFs), as `rag eval FOLDER --questions` counts it.

    .venv/bin/python bench/real_docs_vs_langchain.py --docs /path/to/devdocs [--sets git python debref pdf texinfo apache
        sqlite slony debfaq devref-de devref-fr]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEVSETS = REPO / "tests" / "data" / "devsets"
SETS = {"git": ("git", ["git-html"]), "python": ("python", ["python-html"]),
        "debref": ("debref", ["debref-en", "debref-de", "debref-fr"]), "pdf": ("pdf", ["pdf-manuals"]),
        "texinfo": ("texinfo", ["texinfo-pdf"]), "apache": ("apache", ["apache-html"]),
        # the check sets (tests/data/devsets/README.md): measured, not tuned on
        "sqlite": ("sqlite", ["sqlite-html"]), "slony": ("slony", ["slony-html"]),
        "debfaq": ("debfaq-de", ["debfaq-de"]), "devref-de": ("devref/de", ["devref-de"]),
        "devref-fr": ("devref/fr", ["devref-fr"])}


def answerable(name: str) -> list[dict]:
    from rag.evaluation import is_answerable

    rows = [json.loads(line) for line in (DEVSETS / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    return [q for q in rows if is_answerable(q)]


def hits(top: list[list[tuple[str, int | None]]], questions: list[dict]) -> int:
    return sum(any(path == q["path"] and (q.get("page") is None or page == q["page"]) for path, page in where)
               for where, q in zip(top, questions))


def ours(folder: Path, names: list[str], work: Path, env: dict[str, str]) -> dict[str, object]:
    rag = str(Path(sys.executable).with_name("rag"))
    index = work / "index"
    started = time.perf_counter()
    subprocess.run([rag, "ingest", str(folder), "--index", str(index)], env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    out: dict[str, object] = {"ingest_seconds": round(seconds, 1)}
    for name in names:
        questions = answerable(name)
        queries = work / f"{name}.txt"
        queries.write_text("\n".join(q["question"] for q in questions) + "\n")
        done = subprocess.run([rag, "search", "--queries", str(queries), "--json", "--k", "5", "--index", str(index)],
                              env=env, check=True, capture_output=True, text=True)
        top = []
        for line in done.stdout.splitlines():
            result = json.loads(line)
            top.append([(str(Path(h["path"]).relative_to(folder)), h.get("page")) for h in result["hits"]])
        out[name] = f"{hits(top, questions)}/{len(questions)}"
    return out


def langchain(folder: Path, names: list[str], work: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for i, name in enumerate(names):
        questions = answerable(name)
        file = work / f"{name}.jsonl"
        file.write_text("\n".join(json.dumps(q) for q in questions) + "\n")
        done = subprocess.run([sys.executable, str(REPO / "bench" / "langchain_real_docs.py"), str(folder), str(file)],
                              check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.splitlines()[-1])
        if i == 0:
            out["ingest_seconds"] = result["ingest_seconds"]
        out[name] = f"{hits(result['top'], questions)}/{len(questions)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, required=True,
                        help="the folder holding git/, python/, debref/, pdf/, texinfo/, ... (the devsets README)")
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    args = parser.parse_args()
    env = {**os.environ, "RAG_DEVICE": os.environ.get("RAG_DEVICE", "cpu")}
    report = {}
    for key in args.sets:
        folder_name, names = SETS[key]
        folder = args.docs / folder_name
        work = Path(tempfile.mkdtemp(prefix=f"rag-vs-lc-{key}-"))
        try:
            report[key] = {"ours": ours(folder, names, work, env), "langchain": langchain(folder, names, work)}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps({key: report[key]}), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
