"""Retrieval and answer metrics: recall@k and MRR, and SQuAD-style answer F1 and exact match (answers
normalised as SQuAD's official script does: lower case, no punctuation, no articles, single spaces)."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation and articles, collapse whitespace (SQuAD's scorer)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 between a prediction and one reference."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_f1_em(prediction: str, references: Sequence[str]) -> tuple[float, float]:
    """(F1, exact match) against the best-matching reference."""
    return (max(token_f1(prediction, r) for r in references),
            max(float(normalize_answer(prediction) == normalize_answer(r)) for r in references))


def dedupe_documents(ranked_docs: Sequence[str]) -> list[str]:
    """Document ids in first-seen order (several chunks of one document count once)."""
    return list(dict.fromkeys(ranked_docs))


def recall_at(ranked_docs: Sequence[str], gold: set[str], k: int) -> float:
    """1 if a gold document is among the first k distinct documents."""
    return float(any(d in gold for d in dedupe_documents(ranked_docs)[:k]))


def mrr_at(ranked_docs: Sequence[str], gold: set[str], k: int = 10) -> float:
    for rank, doc in enumerate(dedupe_documents(ranked_docs)[:k], start=1):
        if doc in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked_docs: Sequence[str], gold: set[str], k: int = 10) -> float:
    """Binary-relevance nDCG over distinct documents."""
    docs = dedupe_documents(ranked_docs)[:k]
    dcg = sum(1.0 / math.log2(rank + 1) for rank, d in enumerate(docs, start=1) if d in gold)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal if ideal else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def yes_no(text: str) -> str | None:
    """'yes' or 'no' when an answer commits to one (its first yes/no/true/false word), else None."""
    for word in normalize_answer(text).split():
        if word in ("yes", "true", "correct"):
            return "yes"
        if word in ("no", "not", "false", "incorrect"):
            return "no"
    return None
