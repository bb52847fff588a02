"""From retrieved chunks to the passages a model reads: near-duplicates collapsed, neighbours merged.

Organisations keep copies (the 2024 and 2025 handbook, a PDF and its DOCX); five copies of one paragraph
would fill the model's window with one fact. Chunks are cut with an overlap, so two neighbouring chunks
of one document that are both retrieved read better, and cost fewer tokens, as one passage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from rag.text import WORD
from rag.types import SECTION_SEPARATOR, Hit


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    """The text's word n-grams, lower-cased (a short text is one shingle of all its words)."""
    words = WORD.findall(text.lower())
    if len(words) <= n:
        return frozenset([tuple(words)])
    return frozenset(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def collapse_near_duplicates(hits: Sequence[Hit], threshold: float = 0.8) -> list[Hit]:
    """Keep the best-ranked of each group of chunks whose word 3-gram Jaccard similarity is >= `threshold`.

    A dropped copy's chunk id goes to the kept hit's `duplicate_ids`, so a UI can still show "also in".
    """
    kept: list[Hit] = []
    kept_shingles: list[frozenset] = []
    for hit in hits:
        s = shingles(hit.text)
        for i, other in enumerate(kept_shingles):
            if jaccard(s, other) >= threshold:
                kept[i] = replace(kept[i], duplicate_ids=(*kept[i].duplicate_ids, hit.chunk_id))
                break
        else:
            kept.append(hit)
            kept_shingles.append(s)
    return kept


def join_overlapping(first: str, second: str, min_overlap: int = 20) -> str:
    """`first` + `second` with the text they share (the chunker's overlap) written once."""
    longest = min(len(first), len(second))
    for size in range(longest, min_overlap - 1, -1):
        if first.endswith(second[:size]):
            return first + second[size:]
    return f"{first}\n{second}"


def heading_line(current: str, following: str, separator: str = SECTION_SEPARATOR) -> str:
    """The heading path `following` as a line after text under `current`: the headings they do not share
    ("OPTIONS › -e" then "OPTIONS › -x": "-x")."""
    a, b = current.split(separator) if current else [], following.split(separator)
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    return separator.join(b[shared:]) if shared < len(b) else b[-1]


def merge_neighbours(hits: Sequence[Hit]) -> list[Hit]:
    """Merge hits that are consecutive chunks of one document, on one page, into one passage, at the better
    one's rank.

    The merged passage keeps the lower position's chunk id, page and text order and the best score; the
    other chunk ids go to `merged_ids`. A chunk under another heading than the text before it starts after
    that heading's line, recorded in `sections`.
    """
    out: list[Hit] = []
    for hit in hits:
        for i, kept in enumerate(out):
            lo, hi = kept.position, kept.position + len(kept.merged_ids)
            # one page (slide, sheet) per passage: its citation names the page its sentences are on
            if kept.path != hit.path or kept.page != hit.page or not (hit.position == lo - 1 or hit.position == hi + 1):
                continue
            before, after = (hit, kept) if hit.position < lo else (kept, hit)
            if after.section and after.section != before.last_section:
                # the next chunk starts a section of its own: its heading is written where it begins, as the
                # document has it ("-x" before the option's description), and the sentences after it know it
                line = heading_line(before.last_section, after.section)
                text = f"{before.text}\n\n{line}\n\n{after.text}"
                sections = (*before.sections, (line, after.section), *after.sections)
            else:
                text, sections = join_overlapping(before.text, after.text), (*before.sections, *after.sections)
            out[i] = replace(
                before, text=text, sections=sections, score=max(kept.score, hit.score),
                dense_score=max((s for s in (kept.dense_score, hit.dense_score) if s is not None), default=None),
                merged_ids=(*before.merged_ids, after.chunk_id, *after.merged_ids),
                duplicate_ids=(*kept.duplicate_ids, *hit.duplicate_ids))
            break
        else:
            out.append(hit)
    return out
