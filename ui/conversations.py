"""Saved conversations keep their answers' sources by reference, and show them only to whoever may read them now.

Attacker: a signed-in user (or a token holder) who once read a document and has since lost it: an admin
removed the document, or the users file took them out of the group. A conversation stored with the
passages' text would keep showing the document's words to them for ever (issue 26, finding 7).

A stored answer (`stored_answer`) holds, per source, where its passage came from (path, page, section, the
chunk ids it was built from) and the sha256 of the passage's text, never the text; a support mark's evidence
sentence is kept as its place in that text. When a conversation is shown again (the page's sidebar, the
API's /v1/conversations/{id}), `shown_answer` resolves each source in the current index version for the
reader as they are now:

- ``available``: the document is readable and holds the passage: the same text (found by its hash among
  the document's chunks on that page, whatever their ids after a re-index), or, re-chunked or lightly
  edited since, the chunk sharing most of its word sequences (a sample of hashed five-word shingles is
  kept for this); the passage as the document has it now and its current chunk ids, so the source opens
  again after a re-index or a parser upgrade;
- ``changed``: readable, but the document no longer holds that passage (rewritten since): no text;
- ``unavailable``: removed, or the reader may no longer read it: no text, no path, no title (the same for
  both, as everywhere a document the caller may not read looks absent).

An answer is drawn from its passages: when a source it cites (or, citing none, any of its sources) is
unavailable, its text, quote, the model's own answer and the support marks are withheld too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rag.passages import join_overlapping
from rag.types import Hit, Principal

if TYPE_CHECKING:
    from rag.index import IndexView
    from rag.qa import Answer

AVAILABLE, CHANGED, UNAVAILABLE = "available", "changed", "unavailable"
WITHHELD_NOTE = ("This answer drew on a document that is no longer available to you, so it is not shown: "
                 "ask the question again.")
CHANGED_NOTE = "the document changed since this answer: its passage is no longer in it"
UNAVAILABLE_NOTE = "no longer available to you"
_SUPPORT_KEYS = ("support", "generated_support")
SHINGLE_WORDS = 5
SHINGLE_SAMPLE = 4  # one shingle hash in four is kept (those divisible by it: the same ones in every text)
MIN_SHARED = 0.5  # the share of a passage's kept shingles a chunk must hold to stand for it
_WORD = re.compile(r"\w+")


def passage_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def shingles(text: str) -> set[int]:
    """A sample of the 32-bit hashes of `text`'s five-word sequences (lower-cased words)."""
    words = _WORD.findall(text.lower())
    out = set()
    for i in range(max(1, len(words) - SHINGLE_WORDS + 1)):
        value = int.from_bytes(hashlib.blake2b(" ".join(words[i:i + SHINGLE_WORDS]).encode(), digest_size=4).digest(),
                               "big")
        if value % SHINGLE_SAMPLE == 0:
            out.add(value)
    return out


def locate(text: str, sentence: str) -> tuple[int, int] | None:
    """Where `sentence` (an evidence sentence: the passage's words with its line breaks made spaces) is in
    `text`."""
    found = re.search(r"\s+".join(re.escape(w) for w in sentence.split()), text)
    return None if found is None else found.span()


def stored_answer(answer: Answer | dict[str, Any]) -> dict[str, Any]:
    """The answer as a conversation keeps it: `Answer.to_dict` without any passage's text (each source's
    `text` becomes `text_sha256`; each support mark's `evidence` becomes `evidence_span` in its source).
    Also converts an answer stored before sources were kept by reference."""
    data = dict(answer.to_dict() if not isinstance(answer, dict) else answer)
    texts: dict[int, str] = {}
    sources = []
    for source in data.get("sources", []):
        source = dict(source)
        if "text" in source:
            text = str(source.pop("text"))
            texts[int(source.get("number", 0))] = text
            source["text_sha256"] = passage_hash(text)
            source["shingles"] = sorted(shingles(text))
        source.pop("status", None)
        sources.append(source)
    data["sources"] = sources
    for key in _SUPPORT_KEYS:
        marks = []
        for mark in data.get(key, []):
            mark = dict(mark)
            evidence = str(mark.pop("evidence", "") or "")
            text = texts.get(mark.get("source") or 0, "")
            if evidence and (span := locate(text, evidence)):
                mark["evidence_span"] = list(span)
            marks.append(mark)
        data[key] = marks
    data.pop("withheld", None)
    return data


def _readable_document(view: IndexView, path: str, who: Principal) -> int | None:
    """The id of the live document at `path` if `who` may read it."""
    found = view.list_documents(limit=5, groups=who.document_groups, prefix=path, suffix=path)
    return next((d.doc_id for d in found if d.path == path), None)


def find_passage(chunks: Sequence[Hit], page: int | None, wanted: str, longest: int) -> list[Hit]:
    """The run of at most `longest` consecutive chunks on `page` whose text, joined as a merged passage is,
    has the sha256 `wanted` ([] when none has)."""
    on_page = [c for c in chunks if page is None or c.page == page]
    for start in range(len(on_page)):
        text = ""
        for end in range(start, min(len(on_page), start + longest)):
            if end > start and on_page[end].position != on_page[end - 1].position + 1:
                break
            text = on_page[end].text if end == start else join_overlapping(text, on_page[end].text)
            if passage_hash(text) == wanted:
                return on_page[start:end + 1]
    return []


def closest_chunk(chunks: Sequence[Hit], kept: Sequence[int]) -> Hit | None:
    """The chunk holding the largest share (at least MIN_SHARED) of a passage's `kept` shingles."""
    if not kept:
        return None
    wanted = set(kept)
    best, best_share = None, MIN_SHARED
    for chunk in chunks:
        share = len(wanted & shingles(chunk.text)) / len(wanted)
        if share >= best_share:
            best, best_share = chunk, share
    return best


def shown_answer(stored: dict[str, Any], view: IndexView | None, who: Principal) -> dict[str, Any]:
    """A stored answer as `who` may see it now in `view` (None: no index): each source with its `status`
    (and its text when available), the answer withheld (`withheld: true`) when it stands on a source
    that is unavailable. See the module's description."""
    data = stored_answer(stored)  # answers stored before sources were kept by reference hold their text
    chunks_of: dict[int, list[Hit]] = {}
    texts: dict[int, str] = {}
    sources = []
    for source in data["sources"]:
        source = dict(source)
        wanted = str(source.pop("text_sha256", ""))
        kept = source.pop("shingles", [])
        doc_id = _readable_document(view, str(source.get("path", "")), who) if view is not None else None
        if doc_id is None:
            source.update(status=UNAVAILABLE, text="", path="", title="", section="", chunk_id=0, chunk_ids=[])
        else:
            if doc_id not in chunks_of:
                chunks_of[doc_id] = view.document_chunks(doc_id)  # type: ignore[union-attr]
            run = find_passage(chunks_of[doc_id], source.get("page"), wanted,
                               max(1, len(source.get("chunk_ids") or ())) + 2)
            if run:
                text = run[0].text
                for chunk in run[1:]:
                    text = join_overlapping(text, chunk.text)
                texts[int(source.get("number", 0))] = text  # the same text: evidence spans still point into it
                source.update(status=AVAILABLE, text=text, chunk_id=run[0].chunk_id,
                              chunk_ids=[c.chunk_id for c in run])
            elif (near := closest_chunk(chunks_of[doc_id], kept)) is not None:
                source.update(status=AVAILABLE, text=near.text, chunk_id=near.chunk_id, chunk_ids=[near.chunk_id],
                              page=near.page, section=near.section)
            else:
                source.update(status=CHANGED, text="", chunk_id=0, chunk_ids=[])
        sources.append(source)
    data["sources"] = sources
    cited = [s for s in sources if s.get("cited")] or sources
    withheld = any(s["status"] == UNAVAILABLE for s in cited)
    if withheld:
        data.update(answer="", quote="", generated="", support=[], generated_support=[], note=WITHHELD_NOTE)
    for key in _SUPPORT_KEYS:
        for mark in data[key]:
            a, b = mark.pop("evidence_span", None) or (0, 0)
            mark["evidence"] = " ".join(texts.get(mark.get("source") or 0, "")[a:b].split())
    data["withheld"] = withheld
    return data


def answer_from_shown(data: dict[str, Any]) -> Answer:
    """The `Answer` the page draws for a shown stored answer: an unavailable or changed source says so in
    its title and cannot be opened (chunk id 0)."""
    from rag.qa import Answer

    sources = []
    for source in data.get("sources", []):
        status = source.get("status", AVAILABLE)
        if status == UNAVAILABLE:
            source = {**source, "title": f"({UNAVAILABLE_NOTE})"}
        elif status == CHANGED:
            source = {**source, "title": f"{source.get('title', '')} ({CHANGED_NOTE})"}
        sources.append(source)
    return Answer.from_dict({**data, "sources": sources})
