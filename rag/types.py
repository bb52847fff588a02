"""Dataclasses passed between stages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


# What a numbered part of a document is called, by format (the parsers number slides and sheets as pages).
PAGE_UNITS = {".pptx": "slide", ".xlsx": "sheet"}


def page_unit(path: str) -> str:
    """"page", "slide" or "sheet": the word for a chunk's `page` number in this file's format."""
    dot = path.rfind(".")
    return PAGE_UNITS.get(path[dot:].lower(), "page") if dot >= 0 else "page"


@dataclass(frozen=True)
class ChunkInput:
    """A piece of a document ready to embed and store."""

    text: str
    position: int
    page: int | None = None


@dataclass(frozen=True)
class OcrPageInput:
    """A page (or image frame) whose text OCR read: which engine, how sure it was, and where each word is
    (x0, y0, x1, y1 as fractions of the page, and the word), so a viewer can highlight a cited passage."""

    page: int
    engine: str
    confidence: float
    seconds: float = 0.0
    words: tuple[tuple[float, float, float, float, str], ...] = ()

    @classmethod
    def from_json(cls, data: dict) -> "OcrPageInput":
        return cls(int(data["page"]), str(data["engine"]), float(data["confidence"]), float(data.get("seconds", 0)),
                   tuple((float(w[0]), float(w[1]), float(w[2]), float(w[3]), str(w[4])) for w in data["words"]))


@dataclass(frozen=True)
class DocumentInput:
    """A parsed document with its chunks, as the ingest job hands it to the index writer."""

    path_key: bytes  # the raw file-system path: identity, works for names that are not UTF-8
    path: str  # printable form of the path
    title: str
    size: int
    mtime_ns: int
    content_hash: str
    chunks: tuple[ChunkInput, ...]
    groups: tuple[str, ...] = ()  # who may read it; empty: unknown, admins only
    ocr_pages: tuple[OcrPageInput, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk."""

    chunk_id: int
    path: str
    title: str
    page: int | None
    position: int
    score: float
    text: str
    mtime: float = 0.0
    dense_score: float | None = None  # cosine similarity to the query, when the dense search saw it
    merged_ids: tuple[int, ...] = ()  # the following chunks of the document joined into this passage
    duplicate_ids: tuple[int, ...] = ()  # near-identical chunks left out in favour of this one
    doc_id: int = 0
    ocr_confidence: float | None = None  # set when the chunk's page was read by OCR

    def metadata(self) -> dict[str, object]:
        """Where the chunk is and how it ranked: the fields of `rag search --json` (without the text), also
        a LangChain Document's metadata. OCR'd chunks add `ocr` and the engine's `ocr_confidence`."""
        out: dict[str, object] = {"chunk_id": self.chunk_id, "path": self.path, "page": self.page,
                                  "unit": page_unit(self.path), "score": round(self.score, 6), "title": self.title}
        if self.ocr_confidence is not None:
            out.update(ocr=True, ocr_confidence=round(self.ocr_confidence, 3))
        return out


@dataclass
class SearchResult:
    """The answer to one search query."""

    query: str
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    version: int = 0  # the index version searched


# The group every signed-in user belongs to: a folder marked "everyone" is open to all staff.
EVERYONE = "everyone"


@dataclass(frozen=True)
class Principal:
    """Who is asking: their groups, or an admin, who may read everything (unknown permissions included)."""

    groups: frozenset[str] = frozenset()
    admin: bool = False

    @property
    def document_groups(self) -> list[str] | None:
        """The groups a document must be readable by for this principal to see it (None: an admin, who reads
        everything), as the stores' readers take them."""
        return None if self.admin else sorted(self.groups)

    @classmethod
    def member_of(cls, groups: "Iterable[str]") -> "Principal":
        """A user in `groups` (and in "everyone")."""
        return cls(frozenset(groups) | {EVERYONE})


ADMIN = Principal(admin=True)
