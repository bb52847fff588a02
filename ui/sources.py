"""The source viewer behind the page (and the API): the cited page of a document with the passage
highlighted, and the original file, for a user allowed to read it.

Every call starts from a chunk id or a document id and the caller's `Principal`; a document the caller
may not read is answered exactly like one that does not exist (None), so neither its content, nor a
rendering, nor its existence leaks. Pages are rendered by `ui.render_source` in a sandboxed child with a
time limit, within a pixel bound, the highlight drawn there too (no image of a document is decoded in the
server's process), at most `MAX_RENDERS` at once per process, and cached per (document content, page,
passage).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from threading import BoundedSemaphore, Lock
from typing import Literal

from ingest.sandbox import scrubbed_environment
from rag.index import IndexView
from rag.settings import IMAGE_EXTENSIONS
from rag.store import DocumentInfo
from rag.types import Hit, Principal, page_unit

RENDER_WIDTH = 1100  # pixels: enough to read a page on a laptop screen, small enough to send quickly
VIEW_MAX_PIXELS = 8_000_000  # a page image is never larger: a tall A4 page at 1100 px wide is 1.7 megapixels
MAX_RENDERS = 2  # renders in flight per process; more wait up to RENDER_WAIT_S, then get a refusal
RENDER_WAIT_S = 3.0
HIGHLIGHT = (255, 214, 0, 110)  # translucent yellow


class SourceChangedError(Exception):
    """The file on disk is not the one that was indexed (changed, gone, or swapped for a link)."""


@dataclass(frozen=True)
class SourcePage:
    """What the viewer shows for one page (or slide, or stretch of text) of a cited document."""

    document: DocumentInfo
    page: int | None  # the page shown (None: a format without pages)
    pages: int | None  # how many the document has, for previous/next
    kind: Literal["image", "text"]
    png: bytes = b""  # the rendered page with the passage highlighted (kind "image")
    text: str = ""  # kind "text": the text around the passage
    spans: tuple[tuple[int, int], ...] = ()  # the passage in `text`
    highlighted: bool = False  # whether the passage was found on this page
    note: str = ""  # why a rendering is not shown (the text is shown instead)
    unit: str = "page"


@dataclass(frozen=True)
class Rendered:
    """A page as the sandboxed renderer gave it, its passage highlighted (cached)."""

    pages: int
    png: bytes
    highlighted: bool = False
    error: str = ""


class RenderBusyError(RuntimeError):
    """Every renderer of this process is busy: try again in a moment."""


def read_indexed_file(path: Path, content_hash: str, max_bytes: int) -> bytes:
    """The file's bytes if they are exactly what was indexed (sha256); never through a final symbolic link,
    never a device or a pipe. SourceChangedError when the file changed or went away, or when the document is
    not a file on this machine (a web page's key is its address: never opened as a relative path)."""
    if not path.is_absolute():
        raise SourceChangedError("a web page, not a file: open it at its address")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        raise SourceChangedError("the file is no longer where it was indexed: re-index its folder") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            raise SourceChangedError("the file is no longer the one that was indexed: re-index its folder")
        data = f.read(max_bytes + 1)
    if hashlib.sha256(data).hexdigest() != content_hash:
        raise SourceChangedError("the file changed since it was indexed: re-index its folder to see it")
    return data


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"\w+", text)]


def passage_spans(text: str, passage: str) -> list[tuple[int, int]]:
    """Where `passage` lies in `text` (a page's text, with its own line breaks and hyphens): the runs of
    words the two share in order, as character spans of `text`."""
    tokens = [(m.start(), m.end(), m.group().lower()) for m in re.finditer(r"\w+", text)]
    wanted = _words(passage)
    if not tokens or not wanted:
        return []
    matcher = difflib.SequenceMatcher(None, [t[2] for t in tokens], wanted, autojunk=False)
    spans = [(tokens[b.a][0], tokens[b.a + b.size - 1][1]) for b in matcher.get_matching_blocks()
             if b.size >= 3 or (b.size and len(wanted) < 3)]
    return spans


def _word_marks(words: list[str], passage: str) -> list[int]:
    """Indexes of the OCR words that belong to the passage (runs shared in order)."""
    wanted = _words(passage)
    keyed = [(_words(w) or [""])[0] for w in words]
    matcher = difflib.SequenceMatcher(None, keyed, wanted, autojunk=False)
    return [b.a + i for b in matcher.get_matching_blocks() if b.size >= 2 or len(wanted) < 2 for i in range(b.size)]


def _line_boxes(boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Character (or OCR word) boxes merged into one box per line, so the highlight reads as marker strokes."""
    lines: list[list[float]] = []
    for x0, y0, x1, y1 in boxes:
        if x1 <= x0 or y1 <= y0:
            continue  # spaces and line breaks have empty boxes
        if lines and abs(lines[-1][1] - y0) < 0.5 * (y1 - y0) and lines[-1][2] - 0.01 <= x0 <= lines[-1][2] + 0.05:
            line = lines[-1]
            line[0], line[1], line[2], line[3] = min(line[0], x0), min(line[1], y0), max(line[2], x1), max(line[3], y1)
        else:
            lines.append([x0, y0, x1, y1])
    return [(a, b, c, d) for a, b, c, d in lines]


def highlight_boxes(passage: str, text: str, chars: "list[tuple[float, float, float, float]]",
                    words: "list | None") -> list[tuple[float, float, float, float]]:
    """Where to draw the marker for `passage` on a page, one box per line (fractions of the page): from the
    OCR `words` ([x0, y0, x1, y1, word]) when the page was read by OCR, else from the page's `text` and its
    per-character boxes."""
    if words:
        return _line_boxes([tuple(words[i][:4]) for i in  # type: ignore[misc]
                            _word_marks([str(w[4]) for w in words], passage)])
    boxes: list[tuple[float, float, float, float]] = []
    for start, end in passage_spans(text, passage):
        boxes.extend(_line_boxes(list(chars[start:end])))
    return boxes


def highlight_image(image: "object", boxes: list[tuple[float, float, float, float]]) -> bytes:
    """A PIL image as PNG, with translucent marker over `boxes` (fractions of the page)."""
    from PIL import Image, ImageDraw

    page = image.convert("RGBA")  # type: ignore[attr-defined]
    if boxes:
        layer = Image.new("RGBA", page.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        w, h = page.size
        for x0, y0, x1, y1 in boxes:
            draw.rectangle([x0 * w - 2, y0 * h - 2, x1 * w + 2, y1 * h + 2], fill=HIGHLIGHT)
        page = Image.alpha_composite(page, layer)
    out = io.BytesIO()
    page.convert("RGB").save(out, "PNG")
    return out.getvalue()


@dataclass
class SourceViewer:
    """Shared by every session of a process: the render cache is bounded and locked."""

    max_file_bytes: int
    max_pixels: int = 80_000_000
    render_timeout_s: float = 10.0
    cache_size: int = 64
    _cache: "OrderedDict[tuple[str, int, str], Rendered]" = field(default_factory=OrderedDict)
    _lock: Lock = field(default_factory=Lock)
    _renders: BoundedSemaphore = field(default_factory=lambda: BoundedSemaphore(MAX_RENDERS))

    # -- permission ----------------------------------------------------------------------------------
    def chunk(self, view: IndexView, chunk_id: int, who: Principal) -> tuple[DocumentInfo, Hit] | None:
        """The chunk and its document, if the chunk is in this version and `who` may read its document."""
        hits = view.store.fetch_hits([chunk_id], [0.0])
        if not hits:
            return None
        document = view.document(hits[0].doc_id, who.document_groups)
        return None if document is None else (document, hits[0])

    def original(self, view: IndexView, doc_id: int, who: Principal) -> tuple[DocumentInfo, bytes] | None:
        """The file as it was indexed, if `who` may read it (None otherwise, or when it is not indexed);
        SourceChangedError when the file on disk is no longer what was indexed."""
        document = view.document(doc_id, who.document_groups)
        if document is None:
            return None
        return document, read_indexed_file(Path(document.path), document.content_hash, self.max_file_bytes)

    @staticmethod
    def file_changed(document: DocumentInfo) -> str:
        """Why the file on disk is not the one indexed (by type, size and modification time: cheap, for
        the page to say it before offering a download), or ""; the download itself checks the content hash."""
        if not os.path.isabs(document.path):
            return "a web page, not a file: open it at its address"
        try:
            info = os.lstat(document.path)
        except OSError:
            return "the file is no longer where it was indexed: re-index its folder"
        if not stat.S_ISREG(info.st_mode) or info.st_size != document.size or \
                abs(info.st_mtime_ns / 1e9 - document.modified) > 1e-3:
            return "the file changed since it was indexed: re-index its folder to download it"
        return ""

    # -- pages ---------------------------------------------------------------------------------------
    def page(self, view: IndexView, chunk_id: int, who: Principal, page: int | None = None) -> SourcePage | None:
        """The page holding chunk `chunk_id` (or another `page` of its document), its passage highlighted
        when it lies on the page shown; None when `who` may not read it or it is not in this version."""
        found = self.chunk(view, chunk_id, who)
        if found is None:
            return None
        document, hit = found
        shown = page if page is not None else hit.page
        suffix = Path(document.path).suffix.lower()
        unit = page_unit(document.path)
        if suffix in (".pdf", *IMAGE_EXTENSIONS) and shown is not None:
            return self._image_page(view, document, hit, shown, "pdf" if suffix == ".pdf" else "image")
        return self._text_page(view, document, hit, shown, unit)

    def _text_page(self, view: IndexView, document: DocumentInfo, hit: Hit, shown: int | None, unit: str,
                   note: str = "") -> SourcePage:
        chunks = view.document_chunks(document.doc_id)
        pages = sorted({c.page for c in chunks if c.page is not None})
        if shown is not None and pages:
            part = [c for c in chunks if c.page == shown]
        else:  # no pages: the passage with two chunks either side
            at = next((i for i, c in enumerate(chunks) if c.chunk_id == hit.chunk_id), 0)
            part = chunks[max(0, at - 2):at + 3]
        text = "\n\n".join(c.text for c in part)
        spans = passage_spans(text, hit.text) if (hit.page == shown or shown is None) else []
        return SourcePage(document, shown, max(pages) if pages else None, "text", text=text, spans=tuple(spans),
                          highlighted=bool(spans), note=note, unit=unit)

    def _image_page(self, view: IndexView, document: DocumentInfo, hit: Hit, shown: int,
                    kind: Literal["pdf", "image"]) -> SourcePage:
        passage = hit.text if hit.page == shown else ""
        words = None
        if passage:
            ocr = view.store.ocr_pages(document.doc_id, shown)
            words = [list(w) for w in ocr[0].words] if ocr else None
        try:
            rendered = self.render(document, shown, kind, passage, words)
        except SourceChangedError as exc:
            return self._text_page(view, document, hit, shown, page_unit(document.path), note=str(exc))
        if rendered.error:
            return self._text_page(view, document, hit, shown, page_unit(document.path),
                                   note=f"the page could not be shown ({rendered.error}); its indexed text instead")
        return SourcePage(document, shown, rendered.pages, "image", png=rendered.png, highlighted=rendered.highlighted)

    def render(self, document: DocumentInfo, page: int, kind: Literal["pdf", "image"], passage: str = "",
               words: list | None = None) -> Rendered:
        """Page `page` of the document as indexed, `passage` highlighted (cached per content hash, page and
        passage), rendered in the sandbox; RenderBusyError when MAX_RENDERS renders are in flight and none
        ends within RENDER_WAIT_S."""
        key = (document.content_hash, page, hashlib.sha256(passage.encode()).hexdigest()[:16])
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if not self._renders.acquire(timeout=RENDER_WAIT_S):
            raise RenderBusyError("every page renderer is busy: try again in a moment")
        try:
            data = read_indexed_file(Path(document.path), document.content_hash, self.max_file_bytes)
            rendered = self._render(data, page, kind, passage, words)
        finally:
            self._renders.release()
        with self._lock:
            self._cache[key] = rendered
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return rendered

    def _render(self, data: bytes, page: int, kind: str, passage: str = "", words: list | None = None) -> Rendered:
        request = {"kind": kind, "page": page, "max_width": RENDER_WIDTH,
                   "max_pixels": min(self.max_pixels, VIEW_MAX_PIXELS), "passage": passage, "words": words,
                   "memory_bytes": 1 << 30, "cpu_seconds": int(self.render_timeout_s) + 1}
        try:
            done = subprocess.run([sys.executable, "-m", "ui.render_source"], input=json.dumps(request).encode()
                                  + b"\n" + data, capture_output=True, timeout=self.render_timeout_s,
                                  env=scrubbed_environment(sys.path), cwd="/")
        except subprocess.TimeoutExpired:
            return Rendered(0, b"", error=f"rendering took longer than {self.render_timeout_s:g} s")
        header, _, png = done.stdout.partition(b"\n")
        try:
            info = json.loads(header)
        except json.JSONDecodeError:
            return Rendered(0, b"", error=f"the renderer stopped (exit code {done.returncode})")
        if "error" in info:
            return Rendered(0, b"", error=str(info["error"]))
        return Rendered(int(info["pages"]), png, bool(info.get("highlighted")))
