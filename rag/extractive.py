"""Quoted answers: the passage sentence that answers the question, verbatim, with its citation.

A quote cannot invent anything. It is what the service shows when the model's answer is not backed by
the passages (answer_mode auto), and what it leads with for the small embedded demo model. The sentence
is chosen by its embedding similarity to the question, the share of the question's words it holds, and
whether it has what the question asks for ("how many" wants a number, "when" a date or time, "who" a
name); its neighbour is added when it completes it. Weights tuned on the NarrativeQA and BoolQ dev sets
(bench/answer_modes.py, docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.embedding import Embedder
from rag.support import Facts, content_words, extract_facts

# what a question asks for, by its opening words
_WANTS = (
    (re.compile(r"^\s*(how (many|much|long|far|old|often|big|tall|large|high)|what (percentage|share|number|amount|"
                r"price|size)|what is the (price|cost|number|limit|maximum|minimum))\b", re.I), "number"),
    (re.compile(r"^\s*(when|what (time|date|day|year|month)|until when|since when|by when)\b", re.I), "time"),
    (re.compile(r"^\s*(who|whom|whose|which (person|company|team|department))\b", re.I), "name"),
    (re.compile(r"^\s*where\b", re.I), "place"),
)
_CONTINUES = re.compile(r"^\s*(it|this|that|these|those|they|he|she|its|their|his|her|there|then|also|however|"
                        r"but|and|otherwise)\b", re.I)


@dataclass(frozen=True)
class QuoteWeights:
    similarity: float = 1.0
    overlap: float = 0.6
    kind: float = 0.25


def question_wants(question: str) -> str | None:
    """What kind of fact the question asks for: number, time, name, place, or None."""
    for pattern, kind in _WANTS:
        if pattern.search(question):
            return kind
    return None


def _has(facts: Facts, kind: str | None) -> bool:
    if kind == "number":
        return any(q.unit != "time" for q in facts.quantities)
    if kind == "time":
        return bool(facts.quantities) or bool(facts.names & {"january", "february", "march", "april", "may", "june",
                                                               "july", "august", "september", "october",
                                                               "november", "december", "monday", "tuesday",
                                                               "wednesday", "thursday", "friday", "saturday",
                                                               "sunday"})
    if kind in ("name", "place"):
        return bool(facts.names)
    return False


@dataclass(frozen=True)
class Quote:
    """The sentence(s) that answer a question, as they stand in passage `source`."""

    text: str
    source: int  # the passage's number
    score: float


def choose_quotes(questions: Sequence[str], candidates: Sequence[Sequence[tuple[int, list[str]]]],
                  embedder: Embedder, weights: QuoteWeights = QuoteWeights()) -> list[Quote | None]:
    """For each question, the best sentence among its candidates [(passage number, sentences)], with the
    next sentence when it completes it; None when there is no sentence at all. Batch-first: one
    embedding call for every question and sentence."""
    flat: list[str] = list(questions)
    for per_question in candidates:
        for _, sentences in per_question:
            flat.extend(sentences)
    if len(flat) == len(questions):
        return [None] * len(questions)
    vectors = embedder.embed_batch(flat)
    out: list[Quote | None] = []
    offset = len(questions)
    for qi, (question, per_question) in enumerate(zip(questions, candidates)):
        wants = question_wants(question)
        words = content_words(question)
        best: tuple[float, int, int, int] | None = None  # (score, passage index, sentence index, vector row)
        for pi, (_, sentences) in enumerate(per_question):
            for si, sentence in enumerate(sentences):
                row = offset
                offset += 1
                similarity = float(np.dot(vectors[qi], vectors[row]))
                overlap = len(words & content_words(sentence)) / len(words) if words else 0.0
                kind = 1.0 if wants and _has(extract_facts(sentence, evidence=True), wants) else 0.0
                score = weights.similarity * similarity + weights.overlap * overlap + weights.kind * kind
                if best is None or score > best[0]:
                    best = (score, pi, si, row)
        if best is None:
            out.append(None)
            continue
        score, pi, si, _ = best
        number, sentences = per_question[pi]
        text = sentences[si]
        following = sentences[si + 1] if si + 1 < len(sentences) else ""
        # a sentence that announces what follows, or one the next sentence refers back to, is completed by it
        if following and (text.rstrip().endswith(":") or _CONTINUES.match(following) or len(text.split()) < 6):
            text = f"{text} {following}"
        out.append(Quote(text, number, round(score, 4)))
    return out
