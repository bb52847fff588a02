"""Abstention tuning: how often each threshold refuses answerable questions and answers unanswerable ones.

Three kinds of question, in one run:
- the samples' golden set (samples/questions.jsonl): answerable questions and near misses written on
  purpose (same topics, missing facts: "When is dinner served?" beside the lunch hours);
- each dev set's own questions, answerable from its index (../shared/eval);
- the other dev set's questions against that index: what "no document covers it" looks like.
For each threshold on the service's relevance it reports the answerable questions refused and the
unanswerable ones answered; with `confident_threshold`, the share quoted under a warning in between.

    python bench/abstention.py [--questions 400] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.job import run_ingest  # noqa: E402
from rag.qa import build_service  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from ingest.datasets import write_corpus  # noqa: E402
from rag.evaluation import load_dataset, standalone_questions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETS = ("narrativeqa-dev", "boolq-dev")
SHARED = REPO.parent / "shared" / "eval"
THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.49, 0.52)


def relevance(index: Path, questions: list[str]) -> np.ndarray:
    """The relevance the service decides abstention on, per question."""
    service = build_service(load_settings(index_dir=index, device="cpu"))
    return np.array([service.retrieve(q).relevance for q in questions])


def sample_questions() -> tuple[list[str], list[str]]:
    """(answerable, unanswerable) golden questions, follow-ups rewritten as the page does."""
    rows = [json.loads(line) for line in (REPO / "samples" / "questions.jsonl").read_text().splitlines() if line]
    asked = standalone_questions(rows)
    return ([asked[q["id"]] for q in rows if q.get("answer") is not None],
            [asked[q["id"]] for q in rows if q.get("answer") is None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    results: dict[str, dict[str, np.ndarray]] = {}
    samples_index = args.out / "samples-index"
    run_ingest(load_settings(index_dir=samples_index, device="cpu"), [REPO / "samples"], progress=False)
    answerable, unanswerable = sample_questions()
    results["samples"] = {"answerable": relevance(samples_index, answerable),
                          "unanswerable": relevance(samples_index, unanswerable)}
    questions = {name: [q["question"] for q in load_dataset(SHARED / name, args.questions)[1]] for name in SETS}
    for own, other in (SETS, SETS[::-1]):
        base = args.out / f"eval-{own}"
        if not (base / "docs").is_dir():
            write_corpus(load_dataset(SHARED / own)[0], base / "docs")
        index = base / "index"
        run_ingest(load_settings(index_dir=index, device="cpu"), [base / "docs"], progress=False)
        results[own] = {"answerable": relevance(index, questions[own]),
                        "unanswerable": relevance(index, questions[other])}
    names = list(results)
    print("| threshold | " + " | ".join(f"{s}: answerable refused | {s}: unanswerable answered" for s in names) + " |")
    print("| ---: |" + " ---: | ---: |" * len(names))
    report = []
    for t in THRESHOLDS:
        row: dict[str, object] = {"threshold": t}
        cells = []
        for s in names:
            refused = float(np.mean(results[s]["answerable"] < t))
            answered = float(np.mean(results[s]["unanswerable"] >= t))
            row[s] = {"answerable_refused": round(refused, 3), "unanswerable_answered": round(answered, 3)}
            cells += [f"{refused:.1%}", f"{answered:.1%}"]
        report.append(row)
        print(f"| {t:.2f} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "abstention.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
