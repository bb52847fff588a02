"""Abstention tuning: how often each threshold refuses answerable questions and answers unanswerable ones.

Each dev set's own questions are answerable from its index; the other set's questions are not (they are
about other documents), which is what "a question no document covers" looks like in practice. Compares
the service's relevance (cosine + IDF-weighted word coverage) with the cosine alone, in one run.

    python bench/abstention.py [--questions 400] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ingest.job import run_ingest
from rag.qa import build_service
from rag.settings import load_settings
from ui.evaluate import load_dataset, write_corpus

SETS = ("narrativeqa-dev", "boolq-dev")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
THRESHOLDS = (0.20, 0.25, 0.30, 0.35, 0.40)


def scores(index: Path, questions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(relevance, best cosine) of the passages the service would give the model, per question."""
    service = build_service(load_settings(index_dir=index, device="cpu"))
    relevance, cosine = [], []
    for question in questions:
        got = service.retrieve(question)
        relevance.append(got.relevance)
        cosine.append(max((h.dense_score or 0.0 for h in got.hits), default=0.0))
    return np.array(relevance), np.array(cosine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    questions = {name: [q["question"] for q in load_dataset(SHARED / name, args.questions)[1]] for name in SETS}
    results = {}
    for own, other in (SETS, SETS[::-1]):
        base = args.out / f"eval-{own}"
        if not (base / "docs").is_dir():
            write_corpus(load_dataset(SHARED / own)[0], base / "docs")
        index = base / "index"
        run_ingest(load_settings(index_dir=index, device="cpu"), [base / "docs"], progress=False)
        results[own] = {"answerable": scores(index, questions[own]), "unanswerable": scores(index, questions[other])}
    print("| rule | threshold | " + " | ".join(f"{s}: answerable refused | {s}: unanswerable answered"
                                              for s in SETS) + " |")
    print("| --- | ---: |" + " ---: | ---: |" * len(SETS))
    report = []
    for rule, col in (("relevance", 0), ("cosine only", 1)):
        for t in THRESHOLDS:
            row = {"rule": rule, "threshold": t}
            cells = []
            for s in SETS:
                refused = float(np.mean(results[s]["answerable"][col] < t))
                answered = float(np.mean(results[s]["unanswerable"][col] >= t))
                row[s] = {"answerable_refused": round(refused, 3), "unanswerable_answered": round(answered, 3)}
                cells += [f"{refused:.1%}", f"{answered:.1%}"]
            report.append(row)
            print(f"| {rule} | {t:.2f} | " + " | ".join(cells) + " |")
    (args.out / "abstention.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
