"""`rag eval DATASET_DIR`: index a QA dataset into a temporary index and measure retrieval (and answers).

The dataset format is ../shared/eval/README.md's: corpus.jsonl ({id, title, text}) and queries.jsonl
({id, question, gold_ids, answer, answers?}). Each corpus entry becomes one file, `<id>.txt`, holding
its title and text, so it goes through the same parsing, chunking and embedding as any document.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, unquote

from ingest.job import run_ingest
from rag.metrics import best_f1_em, mrr_at, ndcg_at, percentile, recall_at, yes_no
from rag.qa import QAService, build_service
from rag.search import SearchMode, build_searcher
from rag.settings import Settings

MODES: tuple[SearchMode, ...] = ("dense", "keyword", "hybrid")
CHUNKS_PER_QUERY = 40  # enough chunks to see 10 distinct documents


def load_dataset(folder: Path, limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """(corpus entries, queries) of a dataset folder; `limit` keeps the first queries only."""
    def read(name: str) -> list[dict]:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a dataset folder holds corpus.jsonl and queries.jsonl")
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    corpus, queries = read("corpus.jsonl"), read("queries.jsonl")
    return corpus, queries[:limit] if limit else queries


def write_corpus(corpus: list[dict], folder: Path) -> None:
    """One `<id>.txt` per entry (the id percent-encoded so any id is a safe file name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in corpus:
        title = entry.get("title") or ""
        (folder / f"{quote(str(entry['id']), safe='')}.txt").write_text(
            f"{title}\n\n{entry['text']}" if title else entry["text"], encoding="utf-8")


def doc_id(path: str) -> str:
    return unquote(Path(path).stem)


def evaluate_retrieval(settings: Settings, queries: list[dict], modes: tuple[SearchMode, ...] = MODES,
                       latency_sample: int = 200) -> dict[str, dict[str, float]]:
    """Recall@1/5/10, MRR@10, nDCG@10 per mode over all queries; latency p50/p95 on single queries."""
    searcher = build_searcher(settings)
    searcher.warm_up()
    questions = [q["question"] for q in queries]
    report: dict[str, dict[str, float]] = {}
    for mode in modes:
        ranked: list[list[str]] = []
        for start in range(0, len(questions), 64):
            for result in searcher.search_batch(questions[start:start + 64], CHUNKS_PER_QUERY, mode):
                ranked.append([doc_id(h.path) for h in result.hits])
        golds = [set(map(str, q["gold_ids"])) for q in queries]
        latencies = []
        for question in questions[:latency_sample]:
            started = time.perf_counter()
            searcher.search(question, 5, mode)
            latencies.append((time.perf_counter() - started) * 1000)
        n = max(1, len(queries))
        report[mode] = {
            "recall@1": sum(recall_at(r, g, 1) for r, g in zip(ranked, golds)) / n,
            "recall@5": sum(recall_at(r, g, 5) for r, g in zip(ranked, golds)) / n,
            "recall@10": sum(recall_at(r, g, 10) for r, g in zip(ranked, golds)) / n,
            "mrr@10": sum(mrr_at(r, g) for r, g in zip(ranked, golds)) / n,
            "ndcg@10": sum(ndcg_at(r, g) for r, g in zip(ranked, golds)) / n,
            "latency_ms_p50": percentile(latencies, 50),
            "latency_ms_p95": percentile(latencies, 95),
        }
        report[mode] = {key: round(value, 4) for key, value in report[mode].items()}
    return report


def _score(prediction: str, query: dict) -> tuple[float, float]:
    references = query.get("answers") or [query["answer"]]
    if str(query["answer"]).lower() in ("yes", "no"):  # BoolQ: does the answer say yes or no correctly?
        right = float(yes_no(prediction) == str(query["answer"]).lower())
        return right, right
    return best_f1_em(prediction, references)


def evaluate_answers(service: QAService, queries: list[dict], corpus: dict[str, dict]) -> dict[str, float]:
    """Answer F1/EM through the whole service, abstention rate and latency, plus two bounds for the model:
    the gold document as the only context (best case) and no context at all (what it knows alone)."""
    g = service.generator
    params = service.params()
    full, gold, none, latencies, abstained = [], [], [], [], 0
    for query in queries:
        started = time.perf_counter()
        answer = service.ask(query["question"])
        latencies.append((time.perf_counter() - started) * 1000)
        abstained += answer.abstained
        full.append(_score("" if answer.abstained else answer.answer, query))
        doc = corpus[str(query["gold_ids"][0])]
        room = g.context_window - params.max_new_tokens - g.count_tokens(g.render(query["question"], "")) - 16
        context = "[1] " + g.truncate(f"{doc.get('title', '')}\n\n{doc['text']}", max(room, 32))
        gold.append(_score(g.generate(g.render(query["question"], context), params), query))
        none.append(_score(g.generate(g.render(query["question"], ""), params), query))
    n = max(1, len(queries))

    def mean(rows: list[tuple[float, float]], i: int) -> float:
        return round(sum(r[i] for r in rows) / n, 4)

    return {
        "questions": len(queries), "f1": mean(full, 0), "exact_match": mean(full, 1),
        "abstention_rate": round(abstained / n, 4),
        "gold_context_f1": mean(gold, 0), "gold_context_exact_match": mean(gold, 1),
        "no_context_f1": mean(none, 0), "no_context_exact_match": mean(none, 1),
        "latency_ms_p50": round(percentile(latencies, 50), 1), "latency_ms_p95": round(percentile(latencies, 95), 1),
    }


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
            report["answers"]["prompt_format"] = service.generator.prompt_format()  # type: ignore[index]
    return report
