"""Sentences of technical text, and the passage sentences that can be evidence or a quote.

Documentation is hard on sentence splitters: abbreviations ("e.g.", "p. 56", "z.B.", "c.-à-d."), dotted
names and versions ("os.path", "3.11", "gc.auto"), options and paths at a sentence's end ("--amend.",
"/etc/fstab."), parentheses and quotes around a sentence's end. A period ends a sentence here when it is
followed by white space and a capital, a digit or an opening quote or bracket, and the word before it is
no abbreviation (of English, German or French) and no single initial. The choice of this splitter over
well-kept ones (sentencex, pysbd, syntok) is measured on real documentation's paragraphs
(bench/sentence_segmenters.py, tests/data/sentences-gold.jsonl).
"""

from __future__ import annotations

import re

from rag.support import content_words

# words that end with a period without ending the sentence (lower-cased, without their final period)
ABBREVIATIONS = frozenset("""
e.g i.e eg ie etc vs cf al approx ca fig figs eq eqs no nos nr p pp vol vols ch sec secs sect ed eds resp incl
excl min max esp dept est mr mrs ms dr prof st jr sr inc ltd co corp jan feb mar apr jun jul aug sep sept oct
nov dec mon tue wed thu fri sat sun op cit ibid viz n.b ref refs approx. app
z.b d.h u.a usw bzw vgl ggf evtl inkl ca bspw sog s.o s.u u.u o.ä z.t allg abs nr str tel
p.ex c.-à-d c.à.d cf env éd mme mlle nº
""".split())
# a sentence may open with a lowercase name from the code it documents ("alias is the alias name"): a word
# written as code, or one that a verb follows
_LOWER_START = re.compile(r"\s+(?:[a-z][\w.*\[\]-]*[_.\[*][\w.*\[\]-]*|[a-z]+[A-Z]\w*|[a-z][\w-]*(?:\s+[a-z][\w-]*)?\s+"
                          r"(?:is|are|was|were|should|must|can|may|will|has|have|specifies|defaults|gives|controls|"
                          r"sets|returns|takes|holds|contains|means|comes|come)\b)")
_CANDIDATE = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s+)")
_NEXT_START = re.compile(r"\s+([\"'“‘«(\[]?)(\S)")
_WORD_BEFORE = re.compile(r"(\S+)$")
_LIST_MARKER = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*•])\s")
_LINE_BREAK = re.compile(r"\n(?!\s*\n|\s*(?:\(?\d{1,2}[.)]|[-*•])\s)")


def _ends_sentence(text: str, end: int, mark: str) -> bool:
    """Whether the punctuation `mark` ending at `end` ends a sentence."""
    following = _NEXT_START.match(text, end)
    if following is None:
        return False
    opener, first = following.group(1), following.group(2)
    lower_start = mark.rstrip("\"'”’»)]") == "." and _LOWER_START.match(text, end) is not None
    if not (first.isupper() or first.isdigit() or opener or lower_start):
        return False  # "... e.g. the index" or a lowercase continuation
    if "." not in mark or mark.startswith(("!", "?", "…")):
        return True
    before = _WORD_BEFORE.search(text, 0, end - len(mark) + mark.index(".") + 1)
    word = before.group(1) if before else ""
    word = word.lstrip("([\"'“‘«").lower()
    stem = word[:-1] if word.endswith(".") else word
    if stem in ABBREVIATIONS or stem.rstrip(".") in ABBREVIATIONS:
        return first.isupper() and stem in ("etc", "usw", "ibid") and not first.isdigit()
    if len(stem) == 1 and stem.isalpha():
        return False  # an initial: "J. Smith", "Appendix A. Then" is rare
    if first.isdigit() and stem in ("version", "v", "release", "page", "seite", "chapter", "section", "kapitel"):
        return False
    return True


def split_sentences(text: str) -> list[str]:
    """The sentences of one paragraph (or line) of text, white space at their ends removed."""
    return [text[a:b] for a, b in sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in `text`, surrounding white space excluded."""
    bounds, start = [], 0
    for match in _CANDIDATE.finditer(text):
        if _ends_sentence(text, match.end(), match.group()):
            bounds.append((start, match.end()))
            start = match.end()
    bounds.append((start, len(text)))
    spans = []
    for a, b in bounds:
        piece = text[a:b]
        if piece.strip():
            a += len(piece) - len(piece.lstrip())
            spans.append((a, a + len(piece.strip())))
    return spans


def paragraphs(text: str) -> list[str]:
    """A passage's paragraphs: blocks separated by a blank line; a single line break inside a block is a
    space (a PDF's line end), except before a list item."""
    return [" ".join(p.split()) if "\n" not in p.strip() else _LINE_BREAK.sub(" ", p).strip()
            for p in re.split(r"\n\s*\n", text) if p.strip()]


def evidence_blocks(text: str) -> list[list[str]]:
    """A passage's paragraphs as their sentences that can be evidence: list markers, page furniture and
    fragments of fewer than two content words (a "1." on its own line) never are. A paragraph with none
    is left out."""
    blocks = []
    for paragraph in paragraphs(text):
        sentences = [s for line in paragraph.splitlines() for s in split_sentences(line)]
        kept = [s for s in sentences if len(content_words(s)) >= 2]
        if kept:
            blocks.append(kept)
    return blocks


def evidence_sentences(text: str) -> list[str]:
    """A passage's sentences that can be evidence, in order (see `evidence_blocks`)."""
    return [s for block in evidence_blocks(text) for s in block]
