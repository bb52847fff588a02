"""Rules for a model's text, the same for every backend: where to stop, where a loop starts, what filler to strip."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from rag.prompt import END_KEY, INSTRUCTION_KEY, RESPONSE_KEY

MAX_ANSWER_LINES = 12
_NGRAM = 3
# answer openers and trailers small models add around the content ("The answer is:", a trailing "Output")
_FILLER_START = re.compile(r"^\s*(?:(?:the\s+)?(?:answer|response|output|reply)(?:\s+is)?\s*[:\-–]\s*|"
                           r"(?:sure|certainly|of course)[,!.]\s*|(?:answer|response|output)\s*$)", re.IGNORECASE)
_FILLER_END = re.compile(r"(?:\s*\b(?:output|answer|response|input|instruction|context)\s*:?\s*)+$", re.IGNORECASE)


def repetition_cut(text: str) -> int | None:
    """Where to cut an answer that started looping, or None. Small models repeat themselves instead of
    stopping: a finished line or sentence that already appeared; a run of words (a 3-gram) met a third
    time, across lines ("The answer is 1. The answer is 2. The answer is 3."), cut before its second
    appearance; or more than MAX_ANSWER_LINES lines."""
    units = [m for m in re.finditer(r"[^\n.!?]*[.!?\n]", text)]
    seen: dict[str, int] = {}
    for match in units:
        key = match.group().strip().lower()
        if len(key) < 8:
            continue
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            return match.start()
    words = list(re.finditer(r"\w+", text.lower()))
    grams: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(words) - _NGRAM + 1):
        gram = tuple(w.group() for w in words[i:i + _NGRAM])
        starts = grams.setdefault(gram, [])
        if starts and words[i].start() < starts[-1] + 1:
            continue
        starts.append(words[i].start())
        if len(starts) == 3:
            cut = starts[1]
            line_start = text.rfind("\n", 0, cut) + 1
            sentence = max(text.rfind(". ", 0, cut), text.rfind("? ", 0, cut), text.rfind("! ", 0, cut))
            return max(line_start, sentence + 2 if sentence >= 0 else 0) or cut
    lines = [m.start() for m in re.finditer(r"\n", text)]
    if len(lines) >= MAX_ANSWER_LINES:
        return lines[MAX_ANSWER_LINES - 1]
    return None


# Dolly's keys end a response; a model not trained on the format tends to open a new section
STOP_STRINGS = (END_KEY, INSTRUCTION_KEY, RESPONSE_KEY, "\n###", "\nInput:", "\nOutput:")


def _stop_prefix(text: str, stops: Sequence[str]) -> int:
    """The length of the longest end of `text` that begins a stop string ("... ###" before " End" comes)."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


def cut_at_stops(pieces: Iterable[str], stops: Sequence[str] = STOP_STRINGS) -> Iterator[str]:
    """The pieces up to the first stop string or loop (`repetition_cut`), matched on the decoded text so it
    works for every tokenizer and backend; ends early, and the caller then stops generating. Text that may
    be the start of a stop string split across pieces is held back until the next piece decides it."""
    text = ""
    emitted = 0
    for piece in pieces:
        text += piece
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        if cut < 0:
            cut = repetition_cut(text)
            cut = -1 if cut is None else cut
        if cut >= 0:
            if cut > emitted:
                yield text[emitted:cut]
            return
        safe = len(text) - _stop_prefix(text, stops)
        if safe > emitted:
            yield text[emitted:safe]
            emitted = safe
    if len(text) > emitted:
        yield text[emitted:]


def _same_openings_cut(text: str) -> str:
    """`text` up to the first sentence that opens with the same three words as an earlier one ("The answer
    is 1. The answer is 2."), and without a trailing fragment of one or two words (a stream cut there)."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    openings: set[tuple[str, ...]] = set()
    kept: list[str] = []
    for sentence in sentences:
        opening = tuple(re.findall(r"\w+", sentence.lower())[:3])
        if len(opening) == 3 and opening in openings:
            break
        openings.add(opening)
        kept.append(sentence)
    if len(kept) > 1 and not re.search(r"[.!?\]]$", kept[-1]) and len(kept[-1].split()) < 3:
        kept.pop()
    return " ".join(kept)


def clean_answer(text: str) -> str:
    """The answer without loops, filler openers ("The answer is:") and trailing role words ("Output")."""
    cut = repetition_cut(text)
    if cut is not None:
        text = text[:cut]
    if "\n" not in text.strip():
        text = _same_openings_cut(text)
    previous = None
    while previous != text:
        previous = text
        text = _FILLER_START.sub("", text, count=1).strip()
        text = _FILLER_END.sub("", text).strip()
    return text
