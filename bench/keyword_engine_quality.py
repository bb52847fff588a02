"""Retrieval quality of the keyword engines side by side: right page in the top 5 on the dev sets, and the
QA sets' recall, with tantivy (the default) and FTS5 answering the keyword side of the same hybrid search,
over the same indexes, in one run (issue 28: "English figures on both QA dev sets not lower than today's").

Searching only: nothing is written, so one index serves both engines (`RAG_KEYWORD_ENGINE=sqlite` at search
time reads FTS5; an ingest with it would drop the tantivy copy).

    PYTHONPATH=. .venv/bin/python bench/keyword_engine_quality.py --index-root /path/to/indexes \
        --docs-root /path/to/devdocs [--shared ../shared/eval --qa-root /path/to/qa-indexes]

--index-root holds one index per dev-set folder (git, python, debref, pdf, devref-de, devref-fr: built by
`rag eval FOLDER --questions FILE --index DIR`, tests/data/devsets/README.md); --docs-root the folders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# index folder, documents folder (under --docs-root), question files
DEV = (("git", "git", ["git-html"]), ("python", "python", ["python-html"]),
       ("debref", "debref", ["debref-en", "debref-de", "debref-fr"]), ("pdf", "pdf", ["pdf-manuals"]),
       ("devref-de", "devref/de", ["devref-de"]), ("devref-fr", "devref/fr", ["devref-fr"]))


def main() -> None:
    from bench.quote_selection import devset_questions
    from rag.evaluation import evaluate_folder
    from rag.qa import build_service
    from rag.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-root", type=Path, required=True)
    parser.add_argument("--docs-root", type=Path, required=True)
    args = parser.parse_args()
    report: dict[str, dict[str, str]] = {}
    for folder, docs, files in DEV:
        index = args.index_root / folder
        if not index.is_dir():
            print(f"skipping {folder}: no index at {index}", file=sys.stderr)
            continue
        for engine in ("tantivy", "sqlite"):
            service = build_service(load_settings(index_dir=index, device="cpu", keyword_engine=engine))
            for name in files:
                figure = evaluate_folder(service, devset_questions(name), args.docs_root / docs, answers=False)["page_top5"]
                report.setdefault(name, {})["fts5" if engine == "sqlite" else engine] = f"{figure['hits']}/{figure['of']}"  # type: ignore[index]
                print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
