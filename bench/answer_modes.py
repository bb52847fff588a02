"""Answer quality of the three answer modes, side by side: the model's answer (generative), the quoted
passage sentence (extractive) and what auto mode shows, on the dev sets and the samples' golden set.

One service run per question gives all three (hedging off, so the model answers every question that is
not abstained): auto mode computes the quote and, with the demo model,
still generates (the model's text is kept behind the page's toggle). Scores: token F1 against the best
reference and "contains the gold answer" (SQuAD normalisation); BoolQ: yes/no correct. Abstained
questions score 0 in every mode.

    python bench/answer_modes.py [--questions 60] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.job import run_ingest  # noqa: E402
from rag.qa import build_service  # noqa: E402
from rag.settings import load_settings  # noqa: E402
from ingest.datasets import write_corpus  # noqa: E402
from rag.evaluation import evaluate_answer_modes, evaluate_questions, load_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "eval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    report: dict[str, object] = {}
    for name in ("narrativeqa-dev", "boolq-dev"):
        base = args.out / f"eval-{name}"
        corpus, queries = load_dataset(SHARED / name, args.questions)
        if not (base / "docs").is_dir():
            write_corpus(corpus, base / "docs")
        # no hedging here: every answered question gets the model's answer too, so the three columns are
        # measured on the same questions (auto shows the quote in both cases with the demo model)
        settings = load_settings(index_dir=base / "index", device="cpu", max_new_tokens=args.max_new_tokens,
                                 confident_threshold=-1)
        run_ingest(settings, [base / "docs"], progress=False)
        report[name] = evaluate_answer_modes(build_service(settings), queries)
        print(name, json.dumps(report[name]), flush=True)
    settings = load_settings(index_dir=args.out / "samples-index", device="cpu", max_new_tokens=args.max_new_tokens)
    run_ingest(settings, [REPO / "samples"], progress=False)
    questions = [json.loads(line) for line in (REPO / "samples" / "questions.jsonl").read_text().splitlines() if line]
    report["samples"] = evaluate_questions(build_service(settings), questions)
    print("samples", json.dumps(report["samples"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "answer_modes.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
