"""Which passage sentence answers the question: the quote's scorer, trained and checked on real documentation.

For every answerable question of the dev sets (tests/data/devsets), the passages the service retrieves are
split into paragraphs and sentences once; each sentence gets the features `rag.extractive.sentence_features`
computes (embedding similarity of the sentence and of its paragraph to the question, the rarity-weighted
share of the question's words they hold, whether it holds what the question asks for, its passage's rank
and score ...) and its label: whether the quote made from it (completed as `rag.extractive.complete` does)
holds the expected fact. A scorer is a weight per feature; it is judged by the share of questions whose
best-scoring sentence gives a right quote, with nothing embedded again.

The weights are fitted by listwise logistic regression (softmax over a question's sentences, L2), in
numpy, in seconds. Reported: the shipped weights, weights fitted on all sets, and leave-one-set-out
(fitted on the other sets, scored on the one left out: how much of the gain is fitting these files).
`--write` prints the fitted weights as the Python tuple rag/extractive.py ships. `quoted_at_margin`: the
quote as the service makes it (the best sentence and the runners-up within a margin of it, three
sentences at most) at several margins, with how often it holds the fact and its length in sentences.

Needs the dev sets' indexes: build them with `rag eval FOLDER --questions FILE --index DIR`
(tests/data/devsets/README.md), one folder per set (git, python, debref, pdf, texinfo, apache) under --index-root.

    .venv/bin/python bench/quote_selection.py --index-root /path/to/indexes [--passages 4 --extra 4] [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETS = {"git": ["git-html"], "python": ["python-html"], "debref": ["debref-en", "debref-de", "debref-fr"],
        "pdf": ["pdf-manuals"], "texinfo": ["texinfo-pdf"], "apache": ["apache-html"]}


def devset_questions(name: str) -> list[dict]:
    """The rows of tests/data/devsets/NAME.jsonl."""
    return [json.loads(line) for line in (REPO / "tests" / "data" / "devsets" / f"{name}.jsonl").open()]


@dataclass
class Question:
    name: str  # the questions file it came from
    features: np.ndarray  # sentences x features
    labels: np.ndarray  # sentences: the quote made from it holds the fact
    # margin -> (the quote `choose_quote` makes with the shipped scorer holds the fact, its sentences)
    quoted: dict[float, tuple[bool, int]] = field(default_factory=dict)

    @property
    def reachable(self) -> bool:
        return bool(self.labels.any())


def collect(index_root: Path, passages: int, extra: int) -> list[Question]:
    from rag.evaluation import contains_fact, is_answerable
    from rag.extractive import (SCORER, ScoredCandidates, candidate_sentences, choose_quote, question_wants,
                                sentence_features)
    from rag.qa import build_service
    from rag.sentences import split_sentences
    from rag.settings import load_settings

    out = []
    for folder, files in SETS.items():
        index = index_root / folder
        if not index.is_dir():
            print(f"skipping {folder}: no index at {index}", file=sys.stderr)
            continue
        settings = load_settings(index_dir=index, device="cpu", answer_passages=passages, quote_passages=extra)
        service = build_service(settings)
        service.searcher.warm_up()
        for name in files:
            for q in devset_questions(name):
                if not is_answerable(q):
                    continue
                retrieved = service.retrieve(q["question"], passages, None, None, extra)
                hits = [*retrieved.hits, *retrieved.more]
                candidates = [(i + 1, hit) for i, hit in enumerate(hits)]
                sentences = candidate_sentences(candidates)
                if not sentences:
                    out.append(Question(name, np.zeros((0, 1)), np.zeros(0, bool)))
                    continue
                weights = service.word_weights(q["question"], [h.chunk_id for h in hits])
                features = sentence_features(q["question"], sentences, service.embedder, weights)
                wants = question_wants(q["question"])
                labels = np.array([contains_fact(s.quote(wants), q["answer"]) for s in sentences])
                scored = ScoredCandidates(tuple(h.chunk_id for h in hits), sentences,
                                          features @ np.asarray(SCORER, dtype=np.float32), features)
                quoted = {}
                for margin in MARGINS:
                    parts = choose_quote(q["question"], scored, margin)
                    quoted[margin] = (contains_fact(" ".join(p.text for p in parts), q["answer"]),
                                      sum(len(split_sentences(p.text)) for p in parts))
                out.append(Question(name, features, labels, quoted))
    return out


MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0)  # how close to the best a runner-up must score to be quoted too


def quoted(questions: list[Question]) -> dict[str, dict[str, float]]:
    """At each runner-up margin, the share of questions whose quote (as `choose_quote` makes it, with the
    shipped scorer) holds the fact, and the quote's sentences on average (a question with no sentence
    counts as a wrong quote of none)."""
    return {str(margin): {"right": round(sum(q.quoted.get(margin, (False, 0))[0] for q in questions)
                                         / max(1, len(questions)), 3),
                          "sentences": round(sum(q.quoted.get(margin, (False, 0))[1] for q in questions)
                                             / max(1, len(questions)), 2)}
            for margin in MARGINS}


def accuracy(questions: list[Question], weights: np.ndarray, top: int = 1) -> float:
    """The share of questions with a right quote among the `top` best-scoring sentences."""
    right = 0
    for q in questions:
        if len(q.labels):
            order = np.argsort(-(q.features @ weights))[:top]
            right += bool(q.labels[order].any())
    return right / max(1, len(questions))


def fit(questions: list[Question], l2: float = 0.001, steps: int = 500, rate: float = 0.5) -> np.ndarray:
    """Listwise logistic regression: maximise, per question with a right sentence, the softmax probability
    of its right sentences."""
    usable = [q for q in questions if q.reachable]
    dim = usable[0].features.shape[1]
    w = np.zeros(dim)
    for _ in range(steps):
        grad = l2 * w
        for q in usable:
            scores = q.features @ w
            p = np.exp(scores - scores.max())
            p /= p.sum()
            right = p * q.labels
            right_share = right.sum()
            # d(-log sum_right p)/dw = E_p[f] - E_{p|right}[f]
            grad += (p @ q.features - (right @ q.features) / max(right_share, 1e-12)) / len(usable)
        w -= rate * grad
    return w


def main() -> None:
    from rag.extractive import FEATURES, SCORER

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-root", type=Path, required=True)
    parser.add_argument("--passages", type=int, default=4)
    parser.add_argument("--extra", type=int, default=4)
    parser.add_argument("--write", action="store_true", help="print the weights fitted on all sets")
    args = parser.parse_args()
    questions = collect(args.index_root, args.passages, args.extra)
    names = sorted({q.name for q in questions})

    def per_set(weights: np.ndarray) -> dict[str, float]:
        return {"all": round(accuracy(questions, weights), 3),
                **{n: round(accuracy([q for q in questions if q.name == n], weights), 3) for n in names}}

    report: dict[str, object] = {"questions": len(questions), "passages": args.passages, "extra": args.extra,
                                 "reachable": round(sum(q.reachable for q in questions) / max(1, len(questions)), 3),
                                 "shipped": per_set(np.array(SCORER)),
                                 "shipped_top2": round(accuracy(questions, np.array(SCORER), 2), 3),
                                 "shipped_top3": round(accuracy(questions, np.array(SCORER), 3), 3),
                                 "quoted_at_margin": {"all": quoted(questions),
                                                      **{n: quoted([q for q in questions if q.name == n])
                                                         for n in names}}}
    fitted = fit(questions)
    report["fitted_on_all"] = {**per_set(fitted), "top2": round(accuracy(questions, fitted, 2), 3),
                               "top3": round(accuracy(questions, fitted, 3), 3),
                               "weights": dict(zip(FEATURES, np.round(fitted, 3).tolist()))}
    held_out = {}
    for folder, files in SETS.items():
        test = [q for q in questions if q.name in files]
        train = [q for q in questions if q.name not in files]
        if test and train:
            weights = fit(train)
            held_out[folder] = {"accuracy": round(accuracy(test, weights), 3), "top2": round(accuracy(test, weights, 2), 3),
                                "shipped": round(accuracy(test, np.array(SCORER)), 3), "questions": len(test)}
    report["leave_one_set_out"] = held_out
    print(json.dumps(report, indent=1))
    if args.write:
        print("SCORER = (" + ", ".join(f"{v:.3f}" for v in fitted) + ")")


if __name__ == "__main__":
    main()
