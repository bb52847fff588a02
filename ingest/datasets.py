"""`rag eval`'s indexing side: a QA dataset or a golden question set indexed into a temporary index, then
measured by `rag.evaluation`. Each corpus entry becomes one file, `<id>.txt`, holding its title and
text, so it goes through the same parsing, chunking and embedding as any document."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import quote

from ingest.job import run_ingest
from rag.evaluation import evaluate_answers, evaluate_folder, evaluate_questions, evaluate_retrieval, load_dataset
from rag.qa import build_service
from rag.settings import Settings


def write_corpus(corpus: list[dict], folder: Path) -> None:
    """One `<id>.txt` per entry (the id percent-encoded so any id is a safe file name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in corpus:
        title = entry.get("title") or ""
        (folder / f"{quote(str(entry['id']), safe='')}.txt").write_text(
            f"{title}\n\n{entry['text']}" if title else entry["text"], encoding="utf-8")


def run_questions(settings: Settings, path: Path, index: Path | None = None) -> dict[str, object]:
    """`rag eval QUESTIONS.jsonl`: the golden set against `index`, or against a fresh index of the folder
    the questions file lies in (its `path` fields are relative to that folder)."""
    with open(path, encoding="utf-8") as f:
        questions = [json.loads(line) for line in f if line.strip()]
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        if index is None:
            settings = settings.model_copy(update={"index_dir": Path(tmp) / "index"})
            run_ingest(settings, [path.resolve().parent], progress=False)
        service = build_service(settings)
        return evaluate_questions(service, questions)


def run_eval(settings: Settings, dataset: Path, limit: int | None = None, workdir: Path | None = None,
             answers: int = 0) -> dict[str, object]:
    """Index `dataset` into a temporary index (or `workdir`), measure retrieval, and answers for the
    first `answers` questions (generation is slow on a CPU)."""
    corpus, queries = load_dataset(dataset, limit)
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        base = workdir or Path(tmp)
        docs = base / "docs"
        if not docs.is_dir():
            write_corpus(corpus, docs)
        eval_settings = settings.model_copy(update={"index_dir": base / "index"})
        summary = run_ingest(eval_settings, [docs], progress=False)
        retrieval = evaluate_retrieval(eval_settings, queries)
        report: dict[str, object] = {
            "dataset": dataset.name, "documents": len(corpus), "queries": len(queries),
            "chunks": summary.vectors_total, "ingest_seconds": round(summary.seconds, 1),
            "files_failed": len(summary.files_failed), "retrieval": retrieval,
        }
        if answers:
            service = build_service(eval_settings)
            report["answers"] = evaluate_answers(service, queries[:answers], {str(d["id"]): d for d in corpus})
            report["answers"]["model"] = service.generator.model_id  # type: ignore[index]
            report["answers"]["prompt_format"] = service.generator.prompt_format  # type: ignore[index]
    return report


def run_folder_questions(settings: Settings, folder: Path, questions_file: Path, index: Path | None = None,
                         answers: bool = True, limit: int | None = None) -> dict[str, object]:
    """`rag eval FOLDER --questions FILE`: FOLDER indexed (incrementally) into `index` (kept, so a second
    run only re-reads what changed) or a temporary index; then the questions measured as
    `rag.evaluation.evaluate_folder` says. The report says how long the ingest took."""
    with open(questions_file, encoding="utf-8") as f:
        questions = [json.loads(line) for line in f if line.strip()]
    questions = questions[:limit] if limit else questions
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        eval_settings = settings.model_copy(update={"index_dir": index or Path(tmp) / "index"})
        summary = run_ingest(eval_settings, [folder], progress=False)
        service = build_service(eval_settings)
        report = evaluate_folder(service, questions, folder, answers=answers)
    return {"folder": str(folder), "questions_file": questions_file.name, "documents": summary.files_seen,
            "chunks": summary.vectors_total, "ingest_seconds": round(summary.seconds, 1),
            "files_failed": len(summary.files_failed), **report}
