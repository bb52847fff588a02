"""When to abstain, calibrated on real documentation: answerable and unanswerable questions of the dev sets.

For every question of the dev sets of tests/data/devsets (231 answerable, 50 that the documents do not answer), the
service's retrieval runs as `rag ask` runs it and `rag.qa.relevance_features` are computed: the passages'
best cosine similarity, the rarity-weighted share of the question's words in them and in their best
sentence (words matched by stem, or by a shared prefix of five letters, for German and French
inflections), the score of the best quotable sentence, the share of its words no readable document holds
(a German word written in lower case by its rarity in German), whether a name it gives (`Analyzer.names`: "Flask",
"zstd", "UDP") is in no passage, and the best similarity of one sentence. A linear score
on those features (weights by a constrained random search: the most unanswerable questions abstained while
every set's answerable ones are refused at most 5%, the two QA sets of ../shared/eval included; ties
broken by the samples' near misses, which the previous release was tuned on) gives the
score of how likely the documents answer the question: the service's `relevance`. Reported per set, with the
shipped weights and threshold, and with weights searched on the other sets (leave-one-set-out):
answerable questions refused (target at most 5%) and unanswerable ones abstained, and the samples' golden
questions as a check (never searched on). `--write` prints the weights and threshold as rag/qa.py ships them.

Needs the dev sets' indexes (see bench/quote_selection.py).

    .venv/bin/python bench/abstention_real.py --index-root /path/to/indexes [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.quote_selection import SETS, devset_questions  # noqa: E402
from rag.qa import RELEVANCE_FEATURES  # noqa: E402


QA_SETS = ("boolq-dev", "narrativeqa-dev")
QA_QUESTIONS = 150  # answerable questions taken from each QA set


def relevance_row(service, question: str, retrieved) -> list[float]:  # type: ignore[no-untyped-def]
    """The question's relevance features, or zeros when a name it gives is in no passage: the service then
    abstains whatever the weights (`QAService.missing_name`), so those questions are no target of the search."""
    if service.missing_name(question, [*retrieved.hits, *retrieved.more]):
        return [0.0] * len(RELEVANCE_FEATURES)
    return service.relevance_features(question, retrieved.hits, retrieved.more)[0]


def qa_rows(index_root: Path, shared: Path) -> list[tuple[str, np.ndarray, bool]]:
    """The two QA sets of ../shared/eval (every question answerable), each indexed once under index_root."""
    from ingest.datasets import write_corpus
    from ingest.job import run_ingest
    from rag.evaluation import load_dataset
    from rag.qa import build_service
    from rag.settings import load_settings

    out = []
    for name in QA_SETS:
        if not (shared / name).is_dir():
            continue
        corpus, queries = load_dataset(shared / name, QA_QUESTIONS)
        settings = load_settings(index_dir=index_root / name / "index", device="cpu")
        if not (index_root / name / "docs").is_dir():
            write_corpus(corpus, index_root / name / "docs")
            run_ingest(settings, [index_root / name / "docs"], progress=False)
        service = build_service(settings)
        service.searcher.warm_up()
        for q in queries:
            retrieved = service.retrieve(q["question"], None, None, None, settings.answers.quote_passages)
            features = relevance_row(service, q["question"], retrieved)
            out.append((name, np.array(features, dtype=np.float64), True))
    return out


def samples_rows(index_root: Path) -> list[tuple[str, np.ndarray, bool]]:
    """The samples' golden questions (a check, never fitted on: samples/ is for demos and tests)."""
    from ingest.job import run_ingest
    from rag.evaluation import standalone_questions
    from rag.qa import build_service
    from rag.settings import load_settings

    settings = load_settings(index_dir=index_root / "samples", device="cpu")
    if not settings.index_dir.is_dir():
        run_ingest(settings, [REPO / "samples"], progress=False)
    service = build_service(settings)
    service.searcher.warm_up()
    questions = [json.loads(line) for line in (REPO / "samples" / "questions.jsonl").open()]
    asked = standalone_questions(questions)
    out = []
    for q in questions:
        retrieved = service.retrieve(asked[q["id"]], None, None, None, settings.answers.quote_passages)
        features = relevance_row(service, asked[q["id"]], retrieved)
        out.append(("samples", np.array(features, dtype=np.float64), q.get("answer") is not None))
    return out


def collect(index_root: Path) -> list[tuple[str, np.ndarray, bool]]:
    from rag.evaluation import is_answerable
    from rag.qa import build_service
    from rag.settings import load_settings

    out = []
    for folder, files in SETS.items():
        settings = load_settings(index_dir=index_root / folder, device="cpu")
        service = build_service(settings)
        service.searcher.warm_up()
        for name in files:
            for q in devset_questions(name):
                answerable = is_answerable(q)
                retrieved = service.retrieve(q["question"], None, None, None, settings.answers.quote_passages)
                features = relevance_row(service, q["question"], retrieved)
                out.append((name, np.array(features, dtype=np.float64), answerable))
    return out


def search(rows: list[tuple[str, np.ndarray, bool]], trials: int = 20000, refused: float = 0.05,
           seed: int = 0, tiebreak: list[tuple[str, np.ndarray, bool]] = (), extra: int = 0) -> tuple[np.ndarray, float]:
    """(weights, threshold) of a linear relevance score: among random weights (signs fixed: similarity and
    coverage count for, unknown words and missing names against; `extra` features beyond RELEVANCE_FEATURES,
    each counting for, as bench/late_interaction.py measures), the one that abstains on the most
    unanswerable questions while its threshold refuses at most `refused` of every set's answerable ones
    (at least one question for a set of 15 or more); ties go to the weights that abstain on more of
    `tiebreak`'s unanswerable questions and refuse fewer of its answerable ones."""
    rng = np.random.default_rng(seed)
    sets = sorted({n for n, _, _ in rows})
    answerable = {n: np.array([f for m, f, a in rows if m == n and a]) for n in sets}
    unanswerable = np.array([f for _, f, a in rows if not a])
    check_no = np.array([f for _, f, a in tiebreak if not a]).reshape(-1, len(rows[0][1]))
    check_yes = np.array([f for _, f, a in tiebreak if a]).reshape(-1, len(rows[0][1]))
    best: tuple[tuple[float, float], np.ndarray, float] | None = None
    for _ in range(trials):
        w = np.array([rng.uniform(0, 1), rng.uniform(0, 0.5), rng.uniform(0, 1), rng.uniform(0, 0.05),
                      -rng.uniform(0, 2), -rng.uniform(0, 0.3), rng.uniform(0, 1),
                      *(rng.uniform(0, 1) for _ in range(extra))])
        cut = np.inf
        for features in answerable.values():
            if len(features):
                scores = np.sort(features @ w)
                cut = min(cut, scores[max(int(refused * len(scores)), 1 if len(scores) >= 15 else 0)])
        abstained = float((unanswerable @ w < cut).sum()) if len(unanswerable) else 0.0
        tie = float((check_no @ w < cut).sum()) - float((check_yes @ w < cut).sum())
        if best is None or (abstained, tie) > best[0]:
            best = ((abstained, tie), w, float(cut))
    assert best is not None
    return best[1], best[2]


def probability(features: np.ndarray, w: np.ndarray) -> float:
    return float(features @ w)


def figures(rows: list[tuple[str, np.ndarray, bool]], w: np.ndarray, threshold: float) -> dict[str, object]:
    answerable = [probability(f, w) for _, f, a in rows if a]
    unanswerable = [probability(f, w) for _, f, a in rows if not a]
    return {"refused_answerable": f"{sum(p < threshold for p in answerable)}/{len(answerable)}",
            "abstained_unanswerable": f"{sum(p < threshold for p in unanswerable)}/{len(unanswerable)}"}


def main() -> None:
    from rag.qa import RELEVANCE_WEIGHTS
    from rag.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-root", type=Path, required=True)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--cache", type=Path, help="keep the features here (JSON) and read them back next time")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "eval",
                        help="the QA sets (answerable questions only) fitted on beside the dev sets, when present")
    args = parser.parse_args()
    if args.cache and args.cache.is_file():
        rows = [(n, np.array(f), a) for n, f, a in json.loads(args.cache.read_text())]
    else:
        rows = collect(args.index_root) + qa_rows(args.index_root, args.shared) + samples_rows(args.index_root)
        if args.cache:
            args.cache.write_text(json.dumps([(n, f.tolist(), a) for n, f, a in rows]))
    check = [r for r in rows if r[0] == "samples"]
    rows = [r for r in rows if r[0] != "samples"]
    names = sorted({r[0] for r in rows})
    threshold = Settings.model_fields["abstain_threshold"].default
    shipped = np.array(RELEVANCE_WEIGHTS)
    report: dict[str, object] = {"threshold": threshold, "all": figures(rows, shipped, threshold),
                                 "samples (not fitted on)": figures(check, shipped, threshold),
                                 **{n: figures([r for r in rows if r[0] == n], shipped, threshold) for n in names}}
    held_out = {}
    for folder, files in {**SETS, **{n: [n] for n in QA_SETS}}.items():
        test = [r for r in rows if r[0] in files]
        if test:
            w, cut = search([r for r in rows if r[0] not in files], tiebreak=check)
            held_out[folder] = {"threshold": round(cut, 3), **figures(test, w, cut)}
    report["leave_one_set_out"] = held_out
    print(json.dumps(report, indent=1))
    if args.write:
        w, cut = search(rows, tiebreak=check)
        print(f"RELEVANCE_WEIGHTS = ({', '.join(f'{v:.3f}' for v in w)})  # abstain_threshold {cut:.3f}")


if __name__ == "__main__":
    main()
