"""Text extraction from untrusted files, one `Parser` per format.

These run inside the sandboxed parser processes of `ingest.worker` (address-space and time limits),
so a hostile file can at worst kill its worker. Each parser still refuses what it can recognise as
hostile up front: zip bombs, XML with DTDs or entity declarations, binary data in text files, images
declaring more pixels than the limit (decompression bombs). Scanned pages and images are read by OCR
(ingest/ocr.py) when the worker has an engine.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from charset_normalizer import from_bytes

from ingest.html import ROW_SEPARATOR
from rag.settings import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from PIL import Image

    from ingest.ocr import OcrEngine, OcrPage

T = TypeVar("T")


class ParseError(Exception):
    """A file that cannot be indexed; the message is the one-line reason shown to admins."""


@dataclass(frozen=True)
class Limits:
    """Limits for parsing one file."""

    zip_max_uncompressed: int = 512 * 1024 * 1024
    zip_max_ratio: float = 200.0
    zip_max_members: int = 20_000


@dataclass(frozen=True)
class OcrOptions:
    """The worker's OCR engine (None: OCR unavailable, for `off_reason`) and how pages are given to it."""

    engine: "OcrEngine | None" = None
    off_reason: str = "OCR is off"
    dpi: int = 200
    max_pixels: int = 80_000_000
    max_frames: int = 2000
    # called after each page read: (pages read so far in this file, pages in the file)
    progress: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class ParseOptions:
    """What a parser gets besides the file: the limits, and OCR for scans and images."""

    limits: Limits = Limits()
    ocr: OcrOptions = OcrOptions()


@dataclass
class TextUnit:
    """A section of a page, slide or sheet of a document (page None for formats without pages): its text,
    paragraphs (and list items, table rows, code blocks) separated by blank lines, under `heading`, the
    path of headings it stands under ("Administration", "Backups"); `ocr` when its text was read from an
    image, `warning` when part of it could not be read."""

    text: str
    page: int | None = None
    ocr: "OcrPage | None" = None
    warning: str = ""
    heading: tuple[str, ...] = ()


@dataclass
class ParsedDocument:
    """Text and title extracted from one file."""

    title: str
    units: list[TextUnit] = field(default_factory=list)
    # why a file read without fault holds no text to index (an HTML page of only navigation); a file with
    # no units and no such reason is reported as a failure (an empty file, a scan with OCR off)
    nothing_to_index: str = ""


class Parser(Protocol):
    """Extracts text from a file's bytes."""

    def __call__(self, data: bytes, name: str, options: ParseOptions) -> ParsedDocument: ...


_WS = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n\s*\n+")
# Where a file is parsed differently from how an earlier release parsed it, the index reads it again
# (a normal incremental run re-parses documents of an older parser version; unchanged chunks keep their
# vectors). 1: text nodes joined by newlines, no sections. 2: structure-faithful text with sections. 3: PDF
# pages set in columns (two, three, ...) read column by column, not line by line across the gutter, and a
# term above its indented description read with it. 4: TeX's math symbols read as themselves in PDFs that
# give only their codes ("bindingoffset=⟨length⟩", not "bindingoffset=hlengthi"). 5: PDF paragraphs told apart
# by their lines' baselines, words apart as PDFium's text spaces them ("‘-f’", not "‘ -f ’"), and no letter
# read twice where a slanted one touches the next run ("[array]", not "[array]y]"); a function's signature
# read as the term of its description; a title page's headings head no section; index lines and initials dropped;
# in HTML, breadcrumb trails and Apache's "¶" links, language switchers and directive boxes left out. 6: a
# command's name above its indented synopsis heads its entry in PDFs (bash's builtins: "readarray"), and a
# sentence broken by a page break is read whole. 7: an HTML table with a header row whose cells wrap their text
# in paragraphs (as Sphinx writes every table) is data, its rows named by their columns, not layout. 8: a
# PDF's term set an em from its description, where its description's column begins ("globstar  If set,
# ..."), is read as the term of that description. 9: a function's call that assigns its result ("s = speye
# (m)", Texinfo's @deftypefn) is no term beside a description ("s: = speye (m)"). 10: an HTML book's generated
# index (DocBook's bookindex, Sphinx's genindex) and Sphinx's tables of contents (toctree) are left out.
PARSER_VERSION = 10


def clean(text: str, keep_spaces: bool = False) -> str:
    """Collapse runs of spaces and blank lines; drop NULs and other control characters. `keep_spaces`:
    only the controls and surplus blank lines go (the text's own line layout, code's indentation, stays)."""
    text = text.replace("\x00", "").replace("\r\n", "\n")
    text = "".join(ch for ch in text if ch >= " " or ch in "\n\t")
    if not keep_spaces:
        text = _WS.sub(" ", text)
    return _BLANKS.sub("\n\n", text).strip()


def section_units(sections: "Iterable[tuple[tuple[str, ...], str]]", page: int | None = None) -> list[TextUnit]:
    """One unit per (heading path, text) that holds text."""
    units = []
    for heading, text in sections:
        text = clean(text, keep_spaces=True)
        if text:
            units.append(TextUnit(text, page, heading=tuple(" ".join(h.split()) for h in heading if h.strip())))
    return units


def decode_text(data: bytes) -> str:
    """Decode text in UTF-8 or a legacy encoding (cp1252, Latin-1, Shift-JIS...); refuse binary data."""
    if data.startswith((b"\xef\xbb\xbf",)):
        return data[3:].decode("utf-8", "replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    head = data[:65536]
    if b"\x00" in head:
        raise ParseError("binary content in a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = from_bytes(head if len(data) > 65536 else data).best()
    if best is None or best.encoding is None:
        raise ParseError("binary content or unknown text encoding")
    text = data.decode(best.encoding, "replace")
    # control characters other than whitespace betray binary data decoded as a single-byte charset
    controls = sum(1 for ch in text[:20000] if ch < " " and ch not in "\n\r\t\f")
    if controls > max(8, len(text[:20000]) // 100):
        raise ParseError("binary content in a text file")
    return text


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


# -- plain text formats ----------------------------------------------------------------------------
def parse_text(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    text = decode_text(data)
    return ParsedDocument(_first_line_title(text) or _stem(name), [TextUnit(clean(text))])


_FENCE = re.compile(r"^\s*(```|~~~)")
_ATX = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")


def markdown_sections(text: str) -> list[tuple[tuple[str, ...], str]]:
    """(heading path, text) per section of Markdown: `#` headings (and underlined ones), fenced code kept."""
    out: list[tuple[tuple[str, ...], str]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    fenced = False

    def close() -> None:
        out.append((tuple(h for _, h in path), "\n".join(lines)))
        lines.clear()

    def open_heading(level: int, heading: str) -> None:
        close()
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, heading))

    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            lines.append(line)
            continue
        atx = None if fenced else _ATX.match(line)
        if atx:
            open_heading(len(atx.group(1)), atx.group(2))
            continue
        if not fenced and lines and _SETEXT.match(line) and lines[-1].strip() and not lines[-1].startswith((" ", "-", "*")):
            heading = lines.pop()
            open_heading(1 if line.strip().startswith("=") else 2, heading.strip())
            continue
        lines.append(line)
    close()
    return out


def parse_markdown(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    text = decode_text(data)
    match = re.search(r"^#\s+(.+)$", text, re.M)
    title = match.group(1).strip() if match else _stem(name)
    sections = [(heading[1:] if heading and heading[0] == title else heading, body)
                for heading, body in markdown_sections(text)]
    return ParsedDocument(title, section_units(sections))


_RST_UNDERLINE = re.compile(r"^([=\-~#*^\"+`'.:_])\1{2,}\s*$")


def rst_sections(text: str) -> list[tuple[tuple[str, ...], str]]:
    """(heading path, text) per section of reStructuredText: a title underlined (and maybe overlined) with
    punctuation; levels in the order the underline styles first appear, as docutils assigns them."""
    lines = text.split("\n")
    styles: list[str] = []
    out: list[tuple[tuple[str, ...], str]] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        following = lines[i + 1] if i + 1 < len(lines) else ""
        over = _RST_UNDERLINE.match(line)
        if over and i + 2 < len(lines) and lines[i + 1].strip() and _RST_UNDERLINE.match(lines[i + 2]):
            title, style, i = lines[i + 1].strip(), "over" + over.group(1), i + 3
        elif line.strip() and not line.startswith(" ") and _RST_UNDERLINE.match(following) and \
                len(following.rstrip()) >= len(line.rstrip()) - 2:
            title, style, i = line.strip(), _RST_UNDERLINE.match(following).group(1), i + 2  # type: ignore[union-attr]
        else:
            body.append(line)
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        level = styles.index(style)
        out.append((tuple(h for _, h in path), "\n".join(body)))
        body = []
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
    out.append((tuple(h for _, h in path), "\n".join(body)))
    return out


def parse_rst(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    text = decode_text(data)
    sections = rst_sections(text)
    titled = [heading[0] for heading, _ in sections if heading]
    title = titled[0] if titled else _stem(name)
    return ParsedDocument(title, section_units([(h[1:] if h and h[0] == title else h, b) for h, b in sections]))


def _first_line_title(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:120] if len(line) <= 120 else ""
    return ""


# -- HTML ------------------------------------------------------------------------------------------
_HTML_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.I)


def parse_html(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    from ingest.html import NAVIGATION_ONLY, html_sections, navigation_only

    declared = _HTML_CHARSET.search(data[:4096])
    text = None
    if declared:
        try:
            text = data.decode(declared.group(1).decode("ascii"), "replace")
        except LookupError:
            text = None
    if text is None:
        text = decode_text(data)
    title, sections = html_sections(text)
    units = section_units((s.heading, s.text) for s in sections)
    return ParsedDocument(title or _stem(name), units,
                          "" if units or not navigation_only(text) else NAVIGATION_ONLY)


# -- PDF -------------------------------------------------------------------------------------------
# A page is a scan when images cover most of it and its text layer is thin (a searchable scan, with an
# invisible text layer, keeps that layer), or when it has images and next to no text at all.
SCAN_COVERAGE, SCAN_MAX_CHARS = 0.5, 300
SPARSE_COVERAGE, SPARSE_MAX_CHARS = 0.05, 20


def _image_coverage(page: object) -> float:
    """Share of the page's area under image objects (overlaps counted twice, capped at 1)."""
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()  # type: ignore[attr-defined]
    covered = 0.0
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=3):  # type: ignore[attr-defined]
        left, bottom, right, top = obj.get_bounds()
        covered += max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(top, height) - max(bottom, 0.0))
    return min(1.0, covered / max(1.0, width * height))


def needs_ocr(chars: int, coverage: float) -> bool:
    """Whether a PDF page with `chars` characters of text layer and this image coverage is a scan."""
    return (coverage >= SCAN_COVERAGE and chars < SCAN_MAX_CHARS) or (
        coverage >= SPARSE_COVERAGE and chars < SPARSE_MAX_CHARS)


def render_scale(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> float:
    """pdfium's scale for rendering a page at `dpi`, reduced so the bitmap stays under `max_pixels` (a page
    declaring 200 x 200 inches is read at a lower resolution, not allocated in full)."""
    scale = dpi / 72
    pixels = width_pt * height_pt * scale * scale
    return scale if pixels <= max_pixels else (max_pixels / max(1.0, width_pt * height_pt)) ** 0.5


def _ocr_unit(image: "Image.Image", page: int, ocr: OcrOptions, fallback: str = "") -> TextUnit:
    assert ocr.engine is not None
    result = ocr.engine.read([image])[0]
    if result.error:
        return TextUnit(fallback, page, warning=f"page {page}: {result.error}")
    return TextUnit(clean(result.text), page, ocr=result)


def parse_pdf(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    import pypdfium2 as pdfium

    from ingest.pdf_layout import ENTRY_LEVEL, PageLayout, document_blocks, page_layout

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message:
            raise ParseError("encrypted PDF (password required)") from exc
        raise ParseError(f"corrupt or unsupported PDF ({exc})") from exc
    ocr = options.ocr
    layouts: list[PageLayout] = []  # pages with a text layer, read for their structure together
    scanned: dict[int, TextUnit] = {}  # pages read by OCR (or reported unread), by number
    try:
        pages = len(pdf)
        read = 0
        for number in range(1, pages + 1):
            page = pdf[number - 1]
            textpage = page.get_textpage()
            text = clean(textpage.get_text_bounded())
            chars = sum(1 for ch in text if not ch.isspace())
            if chars < SCAN_MAX_CHARS and needs_ocr(chars, _image_coverage(page)):
                if ocr.engine is None:
                    scanned[number] = TextUnit(text, number, warning=f"page {number}: scanned, not read ({ocr.off_reason})")
                else:
                    width, height = page.get_size()
                    scale = render_scale(width, height, ocr.dpi, ocr.max_pixels)
                    image = page.render(scale=scale, grayscale=True).to_pil()
                    scanned[number] = _ocr_unit(image, number, ocr, fallback=text)
                    read += 1
                    if ocr.progress is not None:
                        ocr.progress(read, pages)
            elif chars:
                width, height = page.get_size()
                layouts.append(page_layout(textpage, number, width, height))
            textpage.close()
            page.close()
        title = (pdf.get_metadata_dict().get("Title") or "").strip()
    finally:
        pdf.close()
    # paragraphs and headings of the text pages; a heading's path carries on across pages
    by_page: dict[int, list[TextUnit]] = {}
    path: list[tuple[int, str]] = []
    blocks = document_blocks(layouts)
    # a title page's headings (the title, a subtitle or motto: Octave's "Free Your Numbers") are set in sizes
    # no later page uses: they head no section, and would otherwise head every passage of the document
    opening = {layout.number for layout in layouts[:2]}
    later = {b.heading_level for b in blocks if b.heading_level is not None and b.page not in opening}
    for block in blocks:
        if block.heading_level is not None and block.page in opening and block.heading_level not in later and later:
            title = title or block.text
            continue
        if block.heading_level is not None:
            while path and path[-1][0] >= block.heading_level:
                path.pop()
            path.append((block.heading_level, block.text))
            if block.heading_level != ENTRY_LEVEL:  # an entry's name ("readarray") is no document's title
                title = title or block.text
            continue
        heading = tuple(h for _, h in path)
        heading = heading[1:] if heading and heading[0] == title else heading  # the title heads every passage
        units = by_page.setdefault(block.page, [])
        if units and units[-1].heading == heading:
            units[-1].text += "\n\n" + block.text
        else:
            units.append(TextUnit(block.text, block.page, heading=heading))
    units = []
    for number in range(1, pages + 1):
        if number in scanned:
            units.append(scanned[number])
        units.extend(u for u in by_page.get(number, []) if u.text.strip())
    return ParsedDocument(title or _stem(name), units)


# -- images ----------------------------------------------------------------------------------------
def open_image(data: bytes) -> "Image.Image":
    """An image file opened lazily (its header read, no pixel decoded); ParseError when it is not one or
    declares more pixels than Pillow's own bomb limit. Each frame's size is checked by `image_frame`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL warns of large images; `image_frame`'s limit decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ParseError(f"image refused: it declares more pixels than any page ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ParseError(f"corrupt or unsupported image ({exc})") from exc


def image_frame(image: "Image.Image", index: int, max_pixels: int) -> "Image.Image":
    """Frame `index` (from 0) of an image from `open_image`, decoded only after the size it declares passed
    `max_pixels`; a single-frame image is turned upright by its EXIF orientation (a phone's photo)."""
    from PIL import ImageOps

    frames = getattr(image, "n_frames", 1)
    try:
        image.seek(index)
    except (EOFError, OSError, ValueError) as exc:
        raise ParseError(f"corrupt image frame {index + 1} ({exc})") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ParseError(f"image refused before decoding: {width} x {height} pixels is over the "
                         f"{max_pixels / 1e6:g}-megapixel limit (a decompression bomb, or a scan at "
                         "an extreme resolution: raise RAG_OCR_MAX_MEGAPIXELS)")
    try:
        return ImageOps.exif_transpose(image.copy()) if frames == 1 else image.copy()
    except (OSError, ValueError, SyntaxError) as exc:
        raise ParseError(f"corrupt image data in frame {index + 1} ({exc})") from exc


def parse_image(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    """Every frame of an image (a multi-page TIFF has many) read by OCR, one unit per frame. The size each
    frame declares is checked before its pixels are decoded."""
    ocr = options.ocr
    if ocr.engine is None:
        raise ParseError(f"image not read: {ocr.off_reason}")
    image = open_image(data)
    frames = getattr(image, "n_frames", 1)
    if frames > ocr.max_frames:
        raise ParseError(f"image with {frames} frames (limit {ocr.max_frames})")
    units = []
    for index in range(frames):
        units.append(_ocr_unit(image_frame(image, index, ocr.max_pixels), index + 1, ocr))
        if ocr.progress is not None:
            ocr.progress(index + 1, frames)
    return ParsedDocument(_stem(name), units)


# -- Office Open XML (zips of XML) -----------------------------------------------------------------
def check_zip(data: bytes, limits: Limits) -> zipfile.ZipFile:
    """Open an OOXML container, refusing zip bombs and XML parts that declare a DTD or entities."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
            raise ParseError("encrypted (password-protected) or legacy binary Office file") from exc
        raise ParseError("corrupt or truncated Office file (not a valid zip container)") from exc
    members = archive.infolist()
    if len(members) > limits.zip_max_members:
        raise ParseError(f"zip container with {len(members)} members (limit {limits.zip_max_members})")
    total = 0
    for info in members:
        total += info.file_size
        if total > limits.zip_max_uncompressed:
            raise ParseError(
                f"zip bomb suspected: expands to more than {limits.zip_max_uncompressed // 2**20} MiB")
        if info.file_size > 1_000_000 and info.file_size > limits.zip_max_ratio * max(1, info.compress_size):
            raise ParseError(f"zip bomb suspected: member {info.filename} is compressed "
                             f"{info.file_size // max(1, info.compress_size)}:1")
    for info in members:
        if info.filename.endswith((".xml", ".rels")):
            try:
                with archive.open(info) as member:
                    head = member.read(4096)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise ParseError(f"corrupt Office file ({exc})") from exc
            if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                raise ParseError(f"XML part {info.filename} declares a DTD or entities (entity bomb or "
                                 "external entity); refused")
    return archive


def _open_office(data: bytes, limits: Limits, kind: str, opener: Callable[[io.BytesIO], T]) -> T:
    """Open an Office file with its library once the container passed `check_zip`."""
    check_zip(data, limits)
    try:
        return opener(io.BytesIO(data))
    except Exception as exc:  # these libraries raise many types for malformed parts; all mean "corrupt"
        raise ParseError(f"corrupt {kind} ({type(exc).__name__}: {exc})") from exc


def parse_docx(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = _open_office(data, options.limits, "Word document", docx.Document)
    sections: list[tuple[tuple[str, ...], list[str]]] = [((), [])]
    path: list[tuple[int, str]] = []
    first_heading = ""
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = " ".join(block.text.split())
            if not text:
                continue
            style = block.style.name if block.style is not None else ""
            level = _heading_level(style)
            if level is not None:
                first_heading = first_heading or text
                if level == 0:  # the Title style: the document's title, above every heading
                    continue
                while path and path[-1][0] >= level:
                    path.pop()
                path.append((level, text))
                sections.append((tuple(h for _, h in path), []))
                continue
            listed = style.startswith("List") or block._p.pPr is not None and block._p.pPr.numPr is not None
            sections[-1][1].append(f"- {text}" if listed else text)
        elif isinstance(block, Table):
            sections[-1][1].extend(_table_lines([[cell.text.strip() for cell in row.cells] for row in block.rows]))
    title = (document.core_properties.title or "").strip() or first_heading or _stem(name)
    return ParsedDocument(title, section_units((h[1:] if h and h[0] == title else h, "\n\n".join(b))
                                               for h, b in sections))


def _heading_level(style: str) -> int | None:
    """A Word paragraph style's heading level (0 for Title), None for body text."""
    if style == "Title":
        return 0
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


def parse_pptx(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    import pptx

    deck = _open_office(data, options.limits, "PowerPoint file", pptx.Presentation)
    units = []
    first_title = ""
    for number, slide in enumerate(deck.slides, start=1):
        lines = []
        slide_title = slide.shapes.title.text_frame.text.strip() if slide.shapes.title is not None else ""
        first_title = first_title or slide_title
        for shape in slide.shapes:
            if shape.has_text_frame:
                text = shape.text_frame.text.strip()
                if text:
                    lines.append(text)
            elif getattr(shape, "has_table", False) and shape.has_table:
                lines.extend(_table_lines([[c.text.strip() for c in row.cells] for row in shape.table.rows]))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame.text.strip() if slide.notes_slide.notes_text_frame else ""
            if notes:
                lines.append(f"Notes: {notes}")
        units.append(TextUnit(clean("\n\n".join(lines), keep_spaces=True), page=number,
                              heading=(" ".join(slide_title.split()),) if slide_title else ()))
    title = (deck.core_properties.title or "").strip() or first_title or _stem(name)
    return ParsedDocument(title, units)


def _table_lines(rows: list[list[str]]) -> list[str]:
    """Rows as 'Header: value · Header: value' lines, so each fact keeps its column name (as HTML tables)."""
    rows = [r for r in rows if any(r)]
    if not rows:
        return []
    header = rows[0]
    if len(rows) == 1 or not all(header):
        return [" | ".join(r) for r in rows]
    lines = [" | ".join(header)]
    for row in rows[1:]:
        pairs = [f"{h}: {v}" for h, v in zip(header, row) if v]
        lines.append(ROW_SEPARATOR.join(pairs))
    return lines


def parse_xlsx(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    import openpyxl

    book = _open_office(data, options.limits, "Excel workbook",
                        lambda f: openpyxl.load_workbook(f, read_only=True, data_only=True))
    units = []
    try:
        for number, sheet in enumerate(book.worksheets, start=1):
            rows = [["" if v is None else str(v).strip() for v in row] for row in sheet.iter_rows(values_only=True)]
            body = "\n\n".join(_table_lines(rows))
            units.append(TextUnit(clean(body), page=number, heading=(f"Sheet: {sheet.title}",)))
        title = (book.properties.title or "").strip() or _stem(name)
    finally:
        book.close()
    return ParsedDocument(title, units)


# -- data and mail ---------------------------------------------------------------------------------
def parse_csv(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    text = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text), dialect)]
    return ParsedDocument(_stem(name), [TextUnit(clean("\n\n".join(_table_lines(rows))))])


def _json_lines(value: object, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_lines(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_lines(item, f"{prefix}[{i}]")
    elif value is not None and value != "":
        yield f"{prefix}: {value}" if prefix else str(value)


def parse_json(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    try:
        value = json.loads(decode_text(data))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ParseError(f"invalid JSON ({exc})") from exc
    title = _stem(name)
    if isinstance(value, dict):
        for key in ("title", "name", "subject"):
            if isinstance(value.get(key), str):
                title = value[key]
                break
    return ParsedDocument(title, [TextUnit(clean("\n".join(_json_lines(value))))])


def parse_eml(data: bytes, name: str, options: ParseOptions) -> ParsedDocument:
    from ingest.html import html_to_text

    message = email.message_from_bytes(data, policy=email.policy.default)
    if not message.keys():
        raise ParseError("not an e-mail message (no headers)")
    headers = [f"{h}: {message[h]}" for h in ("From", "To", "Cc", "Date", "Subject") if message[h]]
    plain: list[str] = []
    html: list[str] = []
    attachments: list[str] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            attachments.append(part.get_filename() or "unnamed")
            continue
        content_type = part.get_content_type()
        if content_type not in ("text/plain", "text/html"):
            continue
        try:
            content = part.get_content()
        except (LookupError, UnicodeDecodeError, ValueError):
            content = decode_text(part.get_payload(decode=True) or b"")
        (plain if content_type == "text/plain" else html).append(str(content))
    body = "\n\n".join(plain) if plain else "\n\n".join(html_to_text(h)[1] for h in html)
    if attachments:
        headers.append("Attachments: " + ", ".join(attachments))
    subject = str(message["Subject"] or "").strip()
    return ParsedDocument(subject or _stem(name), [TextUnit(clean("\n".join(headers) + "\n\n" + body))])


PARSERS: dict[str, Callable[[bytes, str, ParseOptions], ParsedDocument]] = {
    ".txt": parse_text, ".md": parse_markdown, ".rst": parse_rst, ".html": parse_html, ".htm": parse_html,
    ".pdf": parse_pdf, ".docx": parse_docx, ".pptx": parse_pptx, ".csv": parse_csv, ".xlsx": parse_xlsx,
    ".json": parse_json, ".eml": parse_eml,
    **{extension: parse_image for extension in IMAGE_EXTENSIONS},
}


def parser_for(extension: str) -> Parser:
    """The parser for a file extension (lower case, with the dot)."""
    try:
        return PARSERS[extension]
    except KeyError:
        raise ParseError(f"unsupported file type {extension}") from None
