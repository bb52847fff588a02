"""Evaluation of retrieval and answers over an index: what `rag eval` and the benchmarks report.

A QA dataset is a folder with corpus.jsonl ({id, title, text}) and queries.jsonl ({id, question,
gold_ids, answer, answers?}); a golden question set is a JSON-lines file of {id, question, answer,
document, page, follows?}. Indexing a dataset is ingest's (`ingest.datasets`); this module only reads.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import unquote

from rag.followup import standalone_question
from rag.metrics import best_f1_em, mrr_at, ndcg_at, normalize_answer, percentile, recall_at, yes_no
from rag.prompt import context_budget
from rag.qa import Answer, QAService
from rag.search import SearchMode, build_searcher
from rag.settings import Settings
from rag.types import Principal

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


def mode_scores(answer: Answer, query: dict) -> dict[str, tuple[float, float]]:
    """(token F1, contains the gold answer) of the model's answer, the quote and what auto mode showed;
    for a yes/no question both are whether the answer says yes or no correctly."""
    references = query.get("answers") or [query["answer"]]
    out = {}
    for mode, text in (("generative", model_text(answer)), ("extractive", answer.quote),
                       ("auto", "" if answer.abstained else answer.answer)):
        if not text or answer.abstained:
            out[mode] = (0.0, 0.0)
            continue
        f1 = _score(text, query)[0]
        yes_no_question = str(query["answer"]).lower() in ("yes", "no")
        out[mode] = (f1, f1 if yes_no_question else float(any(_contains(text, r) for r in references)))
    return out


def evaluate_answer_modes(service: QAService, queries: list[dict]) -> dict[str, float]:
    """Mean F1 and containment per answer mode (generative, extractive, auto) over `queries`, one service
    run each; and how many were abstained or hedged."""
    rows: dict[str, list[tuple[float, float]]] = {"generative": [], "extractive": [], "auto": []}
    abstained = hedged = 0
    for query in queries:
        answer = service.ask(query["question"])
        abstained += answer.abstained
        hedged += answer.hedged
        for mode, scores in mode_scores(answer, query).items():
            rows[mode].append(scores)
    n = max(1, len(queries))
    report: dict[str, float] = {"questions": len(queries), "abstained": round(abstained / n, 4),
                                "hedged": round(hedged / n, 4)}
    for mode, values in rows.items():
        report[f"{mode}_f1"] = round(sum(v[0] for v in values) / n, 4)
        report[f"{mode}_contains"] = round(sum(v[1] for v in values) / n, 4)
    return report


def evaluate_answers(service: QAService, queries: list[dict], corpus: dict[str, dict]) -> dict[str, float]:
    """Answer F1/EM through the whole service, abstention rate and latency, plus two bounds for the model:
    the gold document as the only context (best case) and no context at all (what it knows alone)."""
    g = service.generator
    params = service.params()
    full, gold, none, latencies, abstained = [], [], [], [], 0
    by_mode: dict[str, list[tuple[float, float]]] = {"generative": [], "extractive": [], "auto": []}
    for query in queries:
        started = time.perf_counter()
        answer = service.ask(query["question"])
        latencies.append((time.perf_counter() - started) * 1000)
        abstained += answer.abstained
        full.append(_score("" if answer.abstained else answer.answer, query))
        for mode, scores in mode_scores(answer, query).items():
            by_mode[mode].append(scores)
        doc = corpus[str(query["gold_ids"][0])]
        room = context_budget(query["question"], g.render, g.count_tokens, g.context_window, params.max_new_tokens)
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
        **{f"{mode}_{name}": mean(rows, i) for mode, rows in by_mode.items()
           for i, name in ((0, "f1"), (1, "contains"))},
        "latency_ms_p50": round(percentile(latencies, 50), 1), "latency_ms_p95": round(percentile(latencies, 95), 1),
    }


def _contains(prediction: str, expected: str) -> bool:
    """Whether the answer holds the expected answer (normalized as SQuAD does, numbers as digits)."""
    from rag.support import spell_out

    return normalize_answer(spell_out(expected)) in normalize_answer(spell_out(prediction))


def model_text(answer: Answer) -> str:
    """The model's own answer, whether it was shown or replaced by a quote."""
    return answer.generated or (answer.answer if answer.mode == "generative" else "")


def standalone_questions(questions: list[dict]) -> dict[str, str]:
    """Each golden question as the page would search it: one with `follows` after the questions of its
    conversation (the chain of `follows`, oldest first), the others as they are."""
    by_id = {q["id"]: q for q in questions}
    asked: dict[str, str] = {}
    for q in questions:
        history: list[str] = []
        earlier = by_id.get(q.get("follows") or "")
        while earlier is not None and len(history) < len(questions):
            history.insert(0, earlier["question"])
            earlier = by_id.get(earlier.get("follows") or "")
        asked[q["id"]] = standalone_question(history, q["question"])
    return asked


def evaluate_questions(service: QAService, questions: list[dict], principal: Principal | None = None) -> dict[str, object]:
    """A golden question set (samples/questions.jsonl): source accuracy (the first cited source is the
    expected document, and page/slide/sheet where given), answer accuracy (the shown answer contains the
    expected one) for the shown, the model's and the quoted answer, abstention both ways, and support-flag
    accuracy (the model's answer is marked supported exactly when it holds the expected answer).
    A question with `follows` is asked as the page would ask it after the one it follows."""
    asked = standalone_questions(questions)
    rows = []
    for q in questions:
        answer = service.ask(asked[q["id"]], principal=principal)
        row: dict[str, object] = {"id": q["id"], "answerable": q.get("answer") is not None,
                                  "abstained": answer.abstained, "mode": answer.mode,
                                  "declined": answer.abstained or answer.hedged}
        if q.get("answer") is not None:
            cited = next((s for s in answer.sources if s.cited), answer.sources[0] if answer.sources else None)
            page_ok = q.get("page") is None or (cited is not None and cited.page == q["page"])
            row["source_ok"] = bool(cited and cited.path.endswith(q["path"]) and page_ok)
            row["shown_ok"] = not answer.abstained and _contains(answer.answer, q["answer"])
            generated = model_text(answer)
            row["model_ok"] = bool(generated) and _contains(generated, q["answer"])
            row["quote_ok"] = bool(answer.quote) and _contains(answer.quote, q["answer"])
            if generated:
                marks = answer.generated_support or answer.support
                row["flags_ok"] = all(m.supported for m in marks) == row["model_ok"]
        rows.append(row)
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    flagged = [r for r in answerable if "flags_ok" in r]

    def share(items: list[dict], key: str) -> float:
        return round(sum(bool(r.get(key)) for r in items) / len(items), 4) if items else 0.0

    return {
        "questions": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable),
        "source_accuracy": share(answerable, "source_ok"),
        "answer_accuracy": share(answerable, "shown_ok"),
        "answer_accuracy_model": share(answerable, "model_ok"),
        "answer_accuracy_quote": share(answerable, "quote_ok"),
        "abstained_unanswerable": share(unanswerable, "abstained"),
        "abstained_answerable": share(answerable, "abstained"),
        # abstained, or quoted the closest passage under "the documents may not answer this"
        "declined_unanswerable": share(unanswerable, "declined"),
        "declined_answerable": share(answerable, "declined"),
        "support_flag_accuracy": share(flagged, "flags_ok"),
        "model": service.generator.model_id,
        "failures": [r["id"] for r in rows if (r["answerable"] and (r["abstained"] or not r.get("source_ok")))
                     or (not r["answerable"] and not r["abstained"])],
    }


def contains_fact(text: str, fact: str) -> bool:
    """Whether `text` holds `fact` as a whole word (or phrase), case-insensitive, white space normalised: how
    "expected fact in the answer" is judged on real documents ("--amend" is found in "use --amend.", "5" is
    not found in "50")."""
    fact = " ".join(fact.split())
    if not fact:
        return False
    pattern = ((r"(?<!\w)" if fact[0].isalnum() or fact[0] == "_" else "") + re.escape(fact).replace(r"\ ", r"\s+")
               + (r"(?!\w)" if fact[-1].isalnum() or fact[-1] == "_" else ""))
    return re.search(pattern, text, re.IGNORECASE) is not None


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def is_answerable(question: dict) -> bool:
    """Whether a questions-file row expects an answer: not marked `"answerable": false`, and it gives one."""
    return question.get("answerable", True) is not False and bool(question.get("answer"))


def evaluate_folder(service: QAService, questions: list[dict], root: Path, k: int = 5,
                    answers: bool = True) -> dict[str, object]:
    """A folder of real documents with a questions file of {question, answer, path, page?, answerable?}
    (`path` relative to `root`): the figures issue 25 is judged on, measured as the held-back check does.

    - page@k: one of the `k` best chunks of `rag search` is on the expected page (its path, and for
      documents with pages its 1-based page when the question gives one);
    - fact in answer: the expected string, a whole word, case-insensitive, in the answer shown (not
      abstained); fact in passages: in any passage the answer was built from (the sources shown);
    - refused: an answerable question abstained; abstained: an unanswerable one abstained.
    """
    rows: list[dict[str, object]] = []
    texts = [q["question"] for q in questions]
    results = []
    for start in range(0, len(texts), 64):
        results.extend(service.searcher.search_batch(texts[start:start + 64], k))
    started = time.perf_counter()
    for q, result in zip(questions, results):
        answerable = is_answerable(q)
        where = [(_relative(h.path, root), h.page) for h in result.hits]
        row: dict[str, object] = {"question": q["question"], "answerable": answerable,
                                  "top": [f"{p}#{page}" if page else p for p, page in where]}
        if answerable:
            row["page_ok"] = any(p == q["path"] and (q.get("page") is None or page == q["page"]) for p, page in where)
        if answers:
            answer = service.ask(q["question"])
            row.update(abstained=answer.abstained, hedged=answer.hedged, mode=answer.mode, answer=answer.answer,
                       relevance=answer.relevance)
            if answerable:
                row["fact_in_answer"] = not answer.abstained and contains_fact(answer.answer, q["answer"])
                row["fact_in_passages"] = any(contains_fact(s.text, q["answer"]) for s in answer.sources)
                row["fact_in_model_answer"] = contains_fact(model_text(answer), q["answer"])
        rows.append(row)
    seconds = time.perf_counter() - started
    answerable_rows = [r for r in rows if r["answerable"]]
    unanswerable_rows = [r for r in rows if not r["answerable"]]

    def count(items: list[dict[str, object]], key: str) -> dict[str, object]:
        hits = sum(bool(r.get(key)) for r in items)
        return {"hits": hits, "of": len(items), "share": round(hits / len(items), 4) if items else 0.0}

    report: dict[str, object] = {"questions": len(rows), "answerable": len(answerable_rows),
                                 "unanswerable": len(unanswerable_rows), f"page_top{k}": count(answerable_rows, "page_ok")}
    if answers:
        report.update(fact_in_answer=count(answerable_rows, "fact_in_answer"),
                      fact_in_passages=count(answerable_rows, "fact_in_passages"),
                      fact_in_model_answer=count(answerable_rows, "fact_in_model_answer"),
                      refused_answerable=count(answerable_rows, "abstained"),
                      abstained_unanswerable=count(unanswerable_rows, "abstained"),
                      answer_seconds_mean=round(seconds / max(1, len(rows)), 2), model=service.generator.model_id,
                      answer_mode=service.settings.mode)
    report["rows"] = rows
    return report
