"""PDF text in reading order, as paragraphs under headings, without the page furniture.

PDFium gives a page's text as runs of one font on one line (its "rects"). From them this module builds
lines (a line's runs in x order), reads pages set in columns (two, three, ...) column by column, and
then, over the whole document:

- removes running headers and footers (a line at the top or bottom of a page that recurs on other pages
  once its digits are ignored, or that holds the page's own printed number) and lone page numbers;
- joins the lines of a paragraph (a line that reaches the right margin continues in the next one, unless
  its baseline stands further below than the text's line spacing), a sentence broken by a page break, and
  words hyphenated at a line end ("inter-" + "face"; kept hyphenated when the document writes the word
  with its hyphen elsewhere, as in "lower-level");
- puts a space between two runs of a line where PDFium's text of the page has one, not wherever their
  letters' boxes stand apart (code in a typewriter font inside quotes reads "‘-f’", not "‘ -f ’");
- reads a term set on a line of its own above its indented description, or beside it across a gap wider
  than an em (Texinfo's tables, man pages' options, key bindings), as one paragraph, "term: description",
  as a definition list in HTML reads;
- finds headings where the PDF has no tags: a short line set larger than the body text, or a short bold
  line standing alone, with levels by size; a command's name on its own line above its indented synopsis
  (Texinfo's "readarray" / "readarray [-d delim] ...", as bash's manual lists its builtins) heads the
  entry, below every other heading;
- drops table-of-contents and index lines ("Installation . . . . . 12", "cd . . . . . 967, 982") and an
  index's initials, which would otherwise match every question about the sections they list;
- reads the symbols of TeX's math fonts as themselves where the PDF gives only their codes (the brackets
  of "bindingoffset=⟨length⟩" came out "bindingoffset=hlengthi").

Pure over PDFium's text objects: no rendering, a few calls per text run (about 8 ms a page).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import ctypes

BOLD_WEIGHT = 550  # PDFium's font weight from which a run counts as bold
# TeX's math symbol fonts (cmsy, Latin Modern's) name glyphs outside Adobe's list ("angbracketleft"): a PDF
# without a ToUnicode map for them reads as the character codes, so LaTeX's "bindingoffset=<length>" (the
# brackets of every argument a package manual describes) came out "bindingoffset=hlengthi". Their lower
# case codes are these symbols (TeX's OMS encoding); no letter of such a font is a lower case letter.
_TEX_SYMBOL_FONT = re.compile(r"^(?:[A-Z]{6}\+)?(?:CMSY|CMBSY|LMMathSymbols|cmsy|cmbsy|lmsy)\d*")
_OMS = str.maketrans("`abcdefghijklmnopqrstuvwxyz", "⊢⊣⌊⌋⌈⌉{}⟨⟩|‖↕⇕\\≀√⨿∇∫⊔⊓⊑⊒§†‡")
_BULLETS = "•◦▪‣∙·*–—-"
_LIST_START = re.compile(rf"^(?:[{re.escape(_BULLETS)}]\s|\(?\d{{1,3}}[.)]\s|\(?[a-z][.)]\s)")
_SENTENCE_END = re.compile(r"[.:;!?]\W*$")
# a contents or index line: dot leaders, then its page numbers ("cd . . . . . 967, 982")
_TOC_LINE = re.compile(r"(?:(?:\.\s?){4,}|\s\.{2,})\s*\d+(?:[\s,]+\d+)*[\s,]*$")
_INDEX_LETTERS = re.compile(r"^(?:[A-Z]\s+)*[A-Z]$")  # the letters an index groups its entries under: "A", "P R"
_NUMBER_AT_END = re.compile(r"(\d{1,4})\s*$")
_NUMBER_AT_START = re.compile(r"^\s*(\d{1,4})\b")
_ROMAN = re.compile(r"^[ivxlcdm]{1,6}$", re.I)
_DIGITS = re.compile(r"\d+")
_WORDS = re.compile(r"[^\W\d_]{2,}")
_WORD_HYPHEN = re.compile(r"([A-Za-zÀ-ÿ]+)-$")
_SOFT_HYPHENS = ("\x02", "\u00ad")  # PDFium marks a hyphen it knows was added to break a word with \x02
_NEXT_WORD = re.compile(r"^([a-zà-ÿ][\w]*)")


class Run(NamedTuple):
    """A run of text of one font on one line, as PDFium gives it (PDF points, y upwards)."""

    left: float
    bottom: float
    right: float
    top: float
    text: str
    size: float
    weight: int
    baseline: float | None = None  # where its letters stand (PDFium's origin of its first character)
    first: int | None = None  # its first and last characters' places in PDFium's text of the page
    last: int | None = None
    spaced: bool | None = None  # PDFium's text has a space just before it (the PDF's own or one PDFium adds)


@dataclass
class Line:
    """One line of text on a page, with where it lies (PDF points, y upwards) and how it is set."""

    text: str
    x0: float
    x1: float
    bottom: float
    top: float
    size: float
    bold: bool
    chars: int = 0
    column: int = 0  # which of the page's text columns, left to right; SPANNING across them
    baseline: float | None = None  # where most of its letters stand (None when PDFium did not say)
    # a line that opens with a few words, then a gap wider than an em before the rest: those words (a
    # term beside its description), and where the rest begins
    head: str = ""
    hang: float = 0.0
    # where later words begin after a gap wider than a word space, among the first few: (words before, x)
    breaks: tuple[tuple[int, float], ...] = ()


@dataclass
class PageLayout:
    """A page's lines in reading order, and its size."""

    number: int
    width: float
    height: float
    lines: list[Line] = field(default_factory=list)


@dataclass
class Block:
    """A paragraph (or a heading) of the document, on its page."""

    page: int
    text: str
    heading_level: int | None = None  # 1 = largest heading; None for body text


def page_layout(textpage: object, number: int, width: float, height: float) -> PageLayout:
    """The lines of one page from PDFium's text runs, in reading order (columns one after the other)."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    boxes = []
    name = ctypes.create_string_buffer(64)
    x, y = ctypes.c_double(), ctypes.c_double()
    for i in range(textpage.count_rects()):  # type: ignore[attr-defined]
        left, bottom, right, top = textpage.get_rect(i)  # type: ignore[attr-defined]
        index = textpage.get_index(left + min(1.0, (right - left) / 2), (bottom + top) / 2, 2, 2)  # type: ignore[attr-defined]
        size, weight, baseline, spaced = 0.0, 0, None, None
        if index is not None and index >= 0:
            size = float(pdfium_c.FPDFText_GetFontSize(textpage.raw, index))  # type: ignore[attr-defined]
            weight = int(pdfium_c.FPDFText_GetFontWeight(textpage.raw, index))  # type: ignore[attr-defined]
            if pdfium_c.FPDFText_GetCharOrigin(textpage.raw, index, ctypes.byref(x), ctypes.byref(y)):  # type: ignore[attr-defined]
                baseline = y.value
            spaced = index > 0 and chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, index - 1)).isspace()  # type: ignore[attr-defined]
        else:
            index = None
        boxes.append([left, bottom, right, top, "", size, weight, baseline, index, None, spaced])  # a Run's fields
    runs = []
    for group in _group_lines(boxes):
        # runs that overlap on a line (a logo's raised and lowered letters, "LaTeX") are read as one box:
        # read box by box, the letters inside both would come twice
        group.sort(key=lambda r: r[0])
        merged: list[list] = []
        for box in group:
            if merged and box[0] < merged[-1][2] - 0.5:
                last = merged[-1]
                last[0], last[1], last[2], last[3] = (min(last[0], box[0]), min(last[1], box[1]), max(last[2], box[2]),
                                                      max(last[3], box[3]))
                last[8] = None  # two runs: no one character to read as a symbol, nor one place in the text
                continue
            merged.append(list(box))
        for box in merged:
            # PDFium reads a letter whose box only touches the run's edge as the run's own: a slanted "y" before
            # a roman "]" came out "[array]y]"; a fifth of a point in from each side reads each letter once
            inset = 0.2 if box[2] - box[0] > 1.0 else 0.0
            text = textpage.get_text_bounded(box[0] + inset, box[1], box[2] - inset, box[3])  # type: ignore[attr-defined]
            if box[8] is not None:
                box[9] = box[8] + len(text) - 1  # where the run ends in the page's text
            box[4] = text.replace("\r", "").replace("\n", " ")
            if box[8] is not None and _tex_symbol(textpage, box[8], box[4].strip(), name):
                box[4] = box[4].translate(_OMS)
            if box[4].strip():
                runs.append(Run(*box))
    return PageLayout(number, width, height, _reading_order(runs))


def _tex_symbol(textpage: object, index: int, text: str, name: "ctypes.Array[ctypes.c_char]") -> bool:
    """Whether a run's `text` is one symbol of a TeX math symbol font read as its code (a lower case letter
    of such a font), the character PDFium reports at `index` in the run. Looked up only for runs of one
    such letter: a font lookup for every run of a page would cost a few percent of the layout."""
    import pypdfium2.raw as pdfium_c

    if len(text) != 1 or not ("`" <= text <= "z"):
        return False
    if chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, index)) != text:  # type: ignore[attr-defined]
        return False
    length = pdfium_c.FPDFText_GetFontInfo(textpage.raw, index, name, len(name), None)  # type: ignore[attr-defined]
    return 0 < length <= len(name) and _TEX_SYMBOL_FONT.match(name.value.decode("latin-1")) is not None


def _group_lines(runs: list) -> list[list]:
    """Runs grouped into lines (vertical overlap with the line's runs), top to bottom."""
    runs = sorted(runs, key=lambda r: -r[3])
    groups: list[list] = []
    for run in runs:
        placed = False
        for group in reversed(groups[-3:]):  # a line is among the last few started
            bottom, top = min(r[1] for r in group), max(r[3] for r in group)
            overlap = min(top, run[3]) - max(bottom, run[1])
            if overlap > 0.5 * min(top - bottom, run[3] - run[1]):
                group.append(run)
                placed = True
                break
        if not placed:
            groups.append([run])
    return groups


def _lines(runs: list[Run], column: int = 0) -> list[Line]:
    """Runs grouped into lines, top to bottom, each left to right."""
    groups = _group_lines(runs)
    lines = []
    for group in groups:
        group.sort(key=lambda r: r.left)
        parts: list[str] = []
        previous: Run | None = None
        head, hang = "", 0.0
        breaks: list[tuple[int, float]] = []
        for run in group:
            if previous is not None and parts and not parts[-1].endswith(" ") and _space_between(previous, run):
                parts.append(" ")
            if previous is not None and not head and run.left - previous.right > 1.5 * max(run.size, 1.0):
                head, hang = " ".join("".join(parts).split()), run.left
            if previous is not None and run.left - previous.right > 0.5 * max(run.size, 1.0):
                before = len("".join(parts).split())
                if 0 < before <= _MAX_HEAD_WORDS:
                    breaks.append((before, run.left))
            parts.append(run.text)
            previous = run
        text = " ".join("".join(parts).split())
        if not text:
            continue
        if len(head.split()) > _MAX_HEAD_WORDS or not text.startswith(head):
            head, hang = "", 0.0
        chars = [(len(r[4].strip()), r[5], r[6]) for r in group]
        total = sum(n for n, _, _ in chars) or 1
        size = max((s for n, s, _ in chars if n), default=0.0)
        bold = sum(n for n, _, w in chars if w >= BOLD_WEIGHT) / total > 0.8
        stands = Counter(round(r.baseline, 1) for n, r in zip(chars, group) if r.baseline is not None and n[0])
        lines.append(Line(text, group[0].left, max(r.right for r in group), min(r.bottom for r in group),
                          max(r.top for r in group), size, bold, total, column,
                          max(stands, key=lambda b: (stands[b], -b)) if stands else None, head, hang,
                          tuple(breaks)))
    return lines


_MAX_HEAD_WORDS = 6  # a term beside its description is a few words


def _space_between(before: Run, after: Run) -> bool:
    """Whether a word space separates two runs side by side on a line: as PDFium's text of the page has it
    where the two follow each other there (it knows the fonts' spacing: "‘-f’", where the quotes' font
    and the code's leave a gap between their letters' boxes, up to a third of an em in TeX's manuals), unless they
    stand further apart than any two letters of a word; else by the gap between them."""
    gap = after.left - before.right
    if before.last is not None and after.first is not None and 0 < after.first - before.last <= 2:
        return bool(after.spaced) or gap > 0.4 * max(after.size, 1.0)
    return gap > 1.5


SPANNING = -1  # Line.column of a line that crosses the gutters (a title, a wide caption) on a page of columns
# points; LaTeX's \columnsep is 10 pt (word spaces that line up over a few lines stay covered by the rest)
_MIN_GUTTER = 5.0
_MIN_COLUMN_LINES = 5
_MAX_PAGE_WIDTH = 14_400  # points: the largest page PDF allows (200 inches), user units aside


def _gutters(runs: list[Run], fill: float = 0.6, filled: float = 0.5) -> list[float]:
    """The x positions of the gutters between the columns of text of a page (or of a band of it), left to
    right; none where the text is one column.

    A gutter is a vertical strip at least `_MIN_GUTTER` wide that (nearly) no run of text crosses, with
    columns of similar width on both sides, each of at least `_MIN_COLUMN_LINES` lines, `filled` of them
    reaching across `fill` of it, of three words or more on average. A table's columns (a narrow term
    column beside a wide description, rows too short to fill their column, a word or two a cell) are not
    text columns: its rows stay rows."""
    if len(runs) < 2 * _MIN_COLUMN_LINES:
        return []
    left, right = int(min(r[0] for r in runs)), int(max(r[2] for r in runs)) + 1
    if right - left > _MAX_PAGE_WIDTH:  # text placed far off the page (a hostile file): no point-by-point scan
        return []
    starts = [0] * (right - left + 2)  # cover[x]: how many runs cross x, by their starts and ends
    for run in runs:
        starts[int(run[0]) - left] += 1
        starts[int(run[2]) - left + 1] -= 1
    cover = list(itertools.accumulate(starts[:-1]))
    allowed = max(2, int(0.05 * len(_group_lines(runs))))  # a title or a caption across the columns
    strips: list[tuple[int, int]] = []
    start = None
    for x, count in enumerate(cover + [allowed + 1]):
        if count <= allowed and start is None:
            start = x
        elif count > allowed and start is not None:
            if start > 0 and x < len(cover) and x - start >= _MIN_GUTTER:
                strips.append((start + left, x + left))
            start = None
    if not strips:
        return []
    cuts = [(a + b) / 2 for a, b in strips]
    columns = _split_columns(runs, cuts)
    widths = []
    for column in columns:
        lines = _lines(column)
        if len(lines) < _MIN_COLUMN_LINES:
            return []
        extent = max(ln.x1 for ln in lines) - min(ln.x0 for ln in lines)
        if (sum(ln.x1 - ln.x0 >= fill * extent for ln in lines) < filled * len(lines)
                or sum(len(ln.text.split()) for ln in lines) < 3 * len(lines)):  # a table's words, not lines of text
            return []
        widths.append(extent)
    if min(widths) < 0.6 * max(widths) or sum(len(c) for c in columns) < 0.8 * len(runs):
        return []
    return cuts


def _split_columns(runs: list[Run], cuts: list[float]) -> list[list[Run]]:
    """The runs inside each column between `cuts` (runs that cross a cut are in none)."""
    edges = [float("-inf"), *cuts, float("inf")]
    columns: list[list[tuple]] = [[] for _ in range(len(cuts) + 1)]
    for run in runs:
        for i in range(len(columns)):
            if edges[i] <= run[0] and run[2] <= edges[i + 1]:
                columns[i].append(run)
                break
    return columns


def _reading_order(runs: list[Run]) -> list[Line]:
    """A page's lines in reading order: on a page of columns (two, three, ...), each column top to
    bottom, left to right, and a line across the gutters (a title, a wide caption) ending the columns
    above it; on a page that opens with text across it and goes on in columns (an article's first page:
    its title and abstract, then two columns), the same for each band of columns; on any other page, top
    to bottom."""
    cuts = _gutters(runs)
    if cuts:
        return _in_columns(runs, cuts)
    if len(runs) < 2 * _MIN_COLUMN_LINES:
        return _lines(runs)
    bands = _bands(runs)
    if not any(not wide and len(band) >= 2 * _MIN_COLUMN_LINES for wide, band in bands):
        return _lines(runs)
    ordered: list[Line] = []
    for wide, band in bands:
        band_runs = [run for row in band for run in row]
        # a band's columns read as justified text does (most lines fill them): a code listing with its
        # comments aligned to the right is no band of columns
        cuts = [] if wide or len(band) < 2 * _MIN_COLUMN_LINES else _gutters(band_runs, fill=0.8, filled=0.6)
        ordered.extend(_in_columns(band_runs, cuts) if cuts else _lines(band_runs, SPANNING))
    return ordered


def _bands(runs: list[Run]) -> list[tuple[bool, list[list]]]:
    """The page's rows (runs side by side), top to bottom, in bands: rows with text across most of the
    page (wide: no gap wider than an em in more than 55% of the text's width) and rows of narrower
    pieces, which may be columns."""
    rows = _group_lines(runs)
    left, right = min(r[0] for r in runs), max(r[2] for r in runs)
    bands: list[tuple[bool, list[list]]] = []
    for row in rows:
        row.sort(key=lambda r: r[0])
        widest, start, end, pieces = 0.0, row[0][0], row[0][2], 1
        for run in row[1:]:
            if run[0] - end > max(run[5], 1.0):
                start, pieces = run[0], pieces + 1
            end = max(end, run[2])
            widest = max(widest, end - start)
        widest = max(widest, end - start)
        # the short last line of a paragraph across the page belongs with it, not with the columns below
        wide = widest > 0.55 * (right - left) or (pieces == 1 and bool(bands) and bands[-1][0])
        if bands and bands[-1][0] == wide:
            bands[-1][1].append(row)
        else:
            bands.append((wide, [row]))
    return bands


def _in_columns(runs: list[Run], cuts: list[float]) -> list[Line]:
    """Lines of runs set in columns between `cuts`: each column top to bottom, left to right, a line across
    the gutters ending the columns above it."""
    columns = _split_columns(runs, cuts)
    column_of = {id(run): i for i, column in enumerate(columns) for run in column}  # runs inside a column
    follows = False
    for row in _group_lines(runs):
        spans = any(id(run) not in column_of for run in row)
        if not spans and follows and len({column_of[id(run)] for run in row}) == 1:
            for run in row:  # the short last line of a paragraph across the columns
                del column_of[id(run)]
            spans = True
        follows = spans
    spanning = _lines([run for run in runs if id(run) not in column_of], SPANNING)
    column_lines = [_lines([run for run in column if id(run) in column_of], i) for i, column in enumerate(columns)]
    ordered: list[Line] = []
    for line in [*spanning, None]:
        above = float("-inf") if line is None else line.bottom
        for lines in column_lines:
            ordered.extend(ln for ln in lines if ln.top > above)
            lines[:] = [ln for ln in lines if ln.top <= above]
        if line is not None:
            ordered.append(line)
    return ordered


# -- the whole document ----------------------------------------------------------------------------------
def _furniture_key(text: str) -> str:
    return _DIGITS.sub("#", " ".join(text.lower().split()))


def _edge_lines(page: PageLayout) -> list[int]:
    """Indexes of the two topmost and two lowest lines of the page: where running heads, feet and page
    numbers are (whatever the margins)."""
    by_height = sorted(range(len(page.lines)), key=lambda i: -page.lines[i].top)
    return sorted(set(by_height[:2] + by_height[-2:]))


def remove_furniture(pages: Sequence[PageLayout]) -> None:
    """Drop running headers and footers, page numbers and table-of-contents lines, in place."""
    keys: Counter[str] = Counter()
    offsets: Counter[int] = Counter()
    for page in pages:
        seen = set()
        for i in _edge_lines(page):
            text = page.lines[i].text
            seen.add(_furniture_key(text))
            for pattern in (_NUMBER_AT_START, _NUMBER_AT_END):
                match = pattern.search(text)
                if match:
                    offsets[page.number - int(match.group(1))] += 1
        keys.update(seen)
    recurring = max(3, int(0.15 * len(pages)))
    body = _body_size(pages)
    offset, votes = offsets.most_common(1)[0] if offsets else (None, 0)
    printed_numbers = votes >= max(2, 0.3 * len(pages))
    for page in pages:
        printed = str(page.number - offset) if printed_numbers and offset is not None else None
        doomed = set()
        for i in _edge_lines(page):
            text = page.lines[i].text.strip()
            words = text.split()
            # a running head holds the printed page number; a chapter title set large ("1 Layout") does not
            numbered = printed is not None and words and printed in (words[0], words[-1]) and \
                page.lines[i].size < body * 1.15
            if keys[_furniture_key(text)] >= recurring or text.isdigit() or _ROMAN.match(text) or numbered:
                doomed.add(i)
        page.lines = [ln for i, ln in enumerate(page.lines) if i not in doomed and not _TOC_LINE.search(ln.text)]


def _body_size(pages: Sequence[PageLayout]) -> float:
    sizes: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            sizes[round(line.size, 1)] += line.chars
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _heading_sizes(pages: Sequence[PageLayout], body: float) -> list[float]:
    """The distinct sizes of heading lines, largest first (each a level)."""
    sizes = {round(ln.size, 1) for p in pages for ln in p.lines if _looks_like_heading(ln, body)}
    return sorted(sizes, reverse=True)


def _looks_like_heading(line: Line, body: float) -> bool:
    text = line.text.strip()
    words = text.split()
    if not words or len(words) > 14 or len(text) < 2 or text.endswith((".", ",", ";")) or not any(c.isalpha() for c in text):
        return False
    larger = body > 0 and line.size >= body * 1.15
    return larger or (line.bold and line.size >= body * 0.95 and len(words) <= 10)


def document_blocks(pages: Sequence[PageLayout]) -> list[Block]:
    """The document's paragraphs and headings, in reading order, page by page."""
    remove_furniture(pages)
    body = _body_size(pages)
    levels = {size: i + 1 for i, size in enumerate(_heading_sizes(pages, body))}
    hyphenated = Counter(w.lower() for p in pages for ln in p.lines for w in re.findall(r"\b\w+-\w+\b", ln.text))
    blocks: list[Block] = []
    previous: tuple[PageLayout, dict[int, tuple[float, float]]] | None = None  # the last page with text, its margins
    for page in pages:
        if not page.lines:
            continue
        margins = _column_margins(page.lines)
        own = [b for b in _page_blocks(page, margins, body, levels, hyphenated)
               if b.heading_level is not None or not _INDEX_LETTERS.match(b.text)]
        if own and blocks and previous is not None and _continues(*previous, page, blocks[-1], own[0]):
            last = blocks[-1]
            last.text = _dehyphenate(last.text, own[0].text, hyphenated) or f"{last.text} {own[0].text}"
            own = own[1:]
        blocks.extend(own)
        previous = page, margins
    return blocks


_TERM_START = re.compile(r"^\S{1,60}: ")  # a definition's term ("encap: Sets ..."): an entry of its own


def _continues(before: PageLayout, margins: dict[int, tuple[float, float]], page: PageLayout, last: Block,
               first: Block) -> bool:
    """Whether `first`, the first paragraph of `page`, goes on with `last`, the last one of the page `before`
    it (both pages with text; `margins`: those of `before`'s columns): a sentence broken by the page break.
    The last line of `before` reaches its margin without ending a sentence, and `page` opens as far in as
    that line (or at its column's margin), in lower case (or after a word broken by a hyphen), with no term
    of its own: "... whether or not the user wishes to view" / "them; otherwise, they are simply listed."
    """
    if (last.heading_level is not None or first.heading_level is not None or first.page != last.page + 1
            or last.page != before.number):
        return False
    end, start = before.lines[-1], page.lines[0]
    left = min(ln.x0 for ln in page.lines if ln.column == start.column)
    return (not _ends_early(end, margins) and not _SENTENCE_END.search(end.text)
            and (abs(start.x0 - end.x0) < 2 or abs(start.x0 - left) < 2) and not _TERM_START.match(first.text)
            and (first.text[:1].islower() or end.text.endswith("-")))


def _page_blocks(page: PageLayout, margins: dict[int, tuple[float, float]], body: float, levels: dict[float, int],
                 hyphenated: Counter[str]) -> Iterator[Block]:
    lines = _align_heads(page.lines, margins)
    gaps = sorted(a.bottom - b.top for a, b in zip(lines, lines[1:]) if 0 < a.bottom - b.top < 3 * max(body, 1))
    usual_gap = gaps[len(gaps) // 2] if gaps else body * 0.3
    # from one line's baseline to the next's: the boxes of a line's letters say less (a line of code or of
    # capitals, "REPLY.", has no descenders, so the space above it looked like a paragraph's)
    pitches = sorted(a.baseline - b.baseline for a, b in zip(lines, lines[1:]) if a.baseline is not None
                     and b.baseline is not None and 0 < a.baseline - b.baseline < 3 * max(body, 1))
    usual_pitch = pitches[len(pitches) // 2] if pitches else None
    terms = _hanging_terms(lines, body, margins)
    beside = _terms_beside(lines)
    entries = _entry_names(lines, body, margins)
    paragraph: list[str] = []
    previous: Line | None = None
    previous_heading: Block | None = None
    describes = False  # the previous line is a term whose description this line begins
    for i, line in enumerate(lines):
        # a short line set larger than the text is a heading; a bold line of the text's size only when it
        # also ends well before the margin (a bold first line of a note is not)
        if _looks_like_heading(line, body) and (line.size >= body * 1.15 or _ends_early(line, margins)):
            level = levels.get(round(line.size, 1), len(levels) + 1)
            if paragraph:
                yield Block(page.number, " ".join(paragraph))
                paragraph = []
            elif (previous_heading is not None and previous_heading.heading_level == level and previous is not None
                  and previous.bottom - line.top < 2 * max(usual_gap, 1) and not re.match(r"\d", line.text)):
                previous_heading.text += " " + line.text  # a heading that wraps onto a second line
                previous = line
                continue
            if previous_heading is not None:
                yield previous_heading
            previous_heading, previous = Block(page.number, line.text, level), line
            continue
        if i in entries:
            if paragraph:
                yield Block(page.number, " ".join(paragraph))
                paragraph = []
            if previous_heading is not None:
                yield previous_heading
                previous_heading = None
            yield Block(page.number, line.text, ENTRY_LEVEL)
            previous, describes = line, False
            continue
        if previous_heading is not None:
            yield previous_heading
            previous_heading = None
        elif describes:
            describes = False
            paragraph[-1] += ":"  # "cdable_vars: If this is set, ...", as a definition list in HTML reads
        elif previous is not None and paragraph:
            gap = previous.bottom - line.top
            apart = gap > max(1.6 * usual_gap, usual_gap + 3)
            if usual_pitch is not None and previous.baseline is not None and line.baseline is not None:
                # the gap between the letters' boxes only where the line also starts elsewhere (an example set
                # in from the text, often at the text's own line spacing)
                apart = (previous.baseline - line.baseline > usual_pitch + max(0.2 * usual_pitch, 1.5)
                         or (apart and abs(line.x0 - previous.x0) > 1.0))
            ended = _ends_early(previous, margins) or previous.text.rstrip().endswith(":")
            if apart or ended or _starts_item(line, previous) or i in beside:
                yield Block(page.number, " ".join(paragraph))
                paragraph = []
            elif i in terms:  # a term's line goes on from the text above it: not a term
                terms.discard(i)
            else:
                joined = _dehyphenate(paragraph[-1], line.text, hyphenated)
                if joined is not None:
                    paragraph[-1] = joined
                    previous = line
                    continue
        paragraph.append(f"{line.head}: {line.text[len(line.head):].lstrip()}" if not paragraph and i in beside
                         else line.text)
        previous = line
        describes = i in terms and len(paragraph) == 1
    if previous_heading is not None:
        yield previous_heading
    if paragraph:
        yield Block(page.number, " ".join(paragraph))


def _starts_item(line: Line, previous: Line) -> bool:
    """Whether `line` opens an item of a list: a bullet, or a number or letter ("2.", "(b)") where the line
    before ended a sentence or the item is set apart from it (a wrapped sentence's line may begin "1) if n
    is not specified")."""
    start = _LIST_START.match(line.text)
    if start is None:
        return False
    return (start.group(0)[0] in _BULLETS or bool(_SENTENCE_END.search(previous.text))
            or abs(line.x0 - previous.x0) > 1.0)


def _align_heads(lines: Sequence[Line], margins: dict[int, tuple[float, float]]) -> list[Line]:
    """The lines, with the terms beside their descriptions that a gap of 1.5 em misses: Texinfo sets a long
    term closer to its description ("globstar  If set, ..." has an em; "extglob" more). Such a line's head
    is the words before a gap wider than a word space that opens where its description goes on (the next
    line of the column begins there, set in from this one, or another term's description does), when:
    - what follows the gap begins with a letter;
    - the line above ended (a macro's name set in the margin beside a paragraph, as LaTeX manuals do, is
      no term: "\\citep  the other for parenthetical ones" goes on from the line above);
    - a head found by its gap is not longer ("borderstyle  char  S  box border style": a table's columns).
    Whether a head is a term beside its description is `_terms_beside`'s to say."""
    confirmed = {(line.column, round(line.hang)) for line, after in zip(lines, lines[1:])
                 if line.head and after.column == line.column and abs(after.x0 - line.hang) < 2}
    aligned: list[Line] = []
    for i, line in enumerate(lines):
        after = lines[i + 1] if i + 1 < len(lines) else None
        before = lines[i - 1] if i > 0 and lines[i - 1].column == line.column else None
        starts = [hang for column, hang in confirmed if column == line.column]
        if after is not None and after.column == line.column and after.x0 > line.x0 + 0.5 * max(line.size, 1.0):
            starts.append(after.x0)
        found = next(((n, x) for n, x in line.breaks if any(abs(x - start) < 2 for start in starts)), None)
        if found is not None and not (line.head and abs(line.hang - found[1]) < 2):
            words, x = found
            split = line.text.split()
            rest = split[words:]
            ended = before is None or _ends_early(before, margins) or _SENTENCE_END.search(before.text)
            if rest and rest[0][0].isalpha() and ended and (not line.head or words < len(line.head.split())):
                line = replace(line, head=" ".join(split[:words]), hang=x)
        aligned.append(line)
    return aligned


def _terms_beside(lines: Sequence[Line]) -> set[int]:
    """Indexes of the lines that open with a term beside its description (Texinfo's tables: "autocd   If
    set, a command name ..."): a head (`Line.head`, `_align_heads`) and the description's column
    confirmed, by the next line going on there or by another such line of the page's column."""
    hangs = [(ln.column, ln.hang) for ln in lines if ln.head]
    beside = set()
    for i, line in enumerate(lines):
        rest = line.text[len(line.head):]
        # not a contents line ("2 Writing classes 4"), an equation and its number, a table's row of values, nor
        # a call that assigns its result ("s = speye (m, n)", where Texinfo sets "=" apart from "s")
        if (not line.head or not _TERM_END.search(line.head) or not any(c.isalpha() for c in line.head)
                or len(_WORDS.findall(rest)) < 2 or _NUMBER_AT_END.search(rest) or rest.lstrip().startswith("=")):
            continue
        after = lines[i + 1] if i + 1 < len(lines) else None
        aligned = after is not None and after.column == line.column and abs(after.x0 - line.hang) < 2
        if aligned or sum(c == line.column and abs(h - line.hang) < 2 for c, h in hangs) >= 2:
            beside.add(i)
    return beside


_TERM_END = re.compile(r"[\w)\]>'\"`*+]$")
_SIGNATURE = re.compile(r"^(?:[\w\[\], ]+= ?)?[A-Za-z_][\w.]* ?\(.*\)$")  # "spy (x)", "[tok, rem] = strtok (str)"
_ONE_SENTENCE = re.compile(r"^[A-Z][^:;]*[a-z0-9)][.]$")


def _hanging_terms(lines: Sequence[Line], body: float, margins: dict[int, tuple[float, float]]) -> set[int]:
    """Indexes of the lines that are a term of a definition list set with a hanging indent (Texinfo's
    @table, a man page's options): a short line on its own, then its description indented under it by
    more than an em, wrapped (its first line reaches the margin, the next is as far in). A function's
    signature (Texinfo's @deftypefn: "spy (. . ., line_spec)", "str = jsonencode (obj)") is such a term
    above a description of one sentence too, as reference manuals describe a function under its call."""
    terms = set()
    em = max(body, 1.0)
    for i in range(len(lines) - 1):
        term, first = lines[i:i + 2]
        second = lines[i + 2] if i + 2 < len(lines) else None
        signature = _SIGNATURE.search(term.text) is not None
        if not (term.column == first.column and len(term.text.split()) <= (12 if signature else 6)
                and _TERM_END.search(term.text) and _ends_early(term, margins)
                and first.x0 - term.x0 > 1.5 * em and term.bottom > first.top - 2 * em
                and first.text[:1].isalpha()):  # not a listing's numbered lines, nor an index's entries
            continue
        wrapped = (second is not None and second.column == first.column and abs(second.x0 - first.x0) < 2
                   and not _ends_early(first, margins))
        if wrapped or (signature and _ONE_SENTENCE.match(first.text)):
            terms.add(i)
    return terms


ENTRY_LEVEL = 100  # an entry's name heads it below every heading the sizes give
_NAME = re.compile(r"^[A-Za-z_][\w.-]{0,40}(?<![.-])$")
_FULL_STOP = re.compile(r"(?<!\.)\.\s*$")  # a sentence's end, not a synopsis's "[name ...]"


def _entry_names(lines: Sequence[Line], body: float, margins: dict[int, tuple[float, float]]) -> set[int]:
    """Indexes of the lines that name the entry below them: one word on its own line, then the entry's
    synopsis starting with that word, indented by more than an em and a half ("readarray" above
    "readarray [-d delim] [-n count] ...", as Texinfo sets a @table item followed by its @example), not a
    description that begins with the term it describes ("Maintainer" / "Maintainer of the package.",
    "LANGUAGE" / "LANGUAGE is not specified by Posix, but ..." wrapped as far in). Its
    description follows the synopsis, so the name would otherwise head no sentence of it."""
    em = max(body, 1.0)
    names = set()
    for i in range(len(lines) - 1):
        name, synopsis = lines[i:i + 2]
        word = name.text.strip()
        if not (_NAME.match(word) and synopsis.column == name.column and synopsis.x0 - name.x0 > 1.5 * em
                and synopsis.text.startswith((word + " ", word + "(")) and name.bottom > synopsis.top - 2 * em
                and _ends_early(name, margins) and not _FULL_STOP.search(synopsis.text)):
            continue
        # prose that wraps at the margin and goes on as far in is a description, not a synopsis (which gives
        # its arguments in brackets, and may wrap too: "complete [-abcdefgjksuv] ... [-" / "G globpat]")
        after = lines[i + 2] if i + 2 < len(lines) else None
        wraps = (after is not None and after.column == synopsis.column and abs(after.x0 - synopsis.x0) < 2
                 and not _ends_early(synopsis, margins) and not any(c in synopsis.text for c in "[("))
        if not wraps:
            names.add(i)
    return names


def _ends_early(line: Line, margins: dict[int, tuple[float, float]]) -> bool:
    """Whether `line` ends well before its column's right margin (a paragraph's last line, a heading, a term)."""
    right_edge, width = margins[line.column]
    return line.x1 < right_edge - 0.12 * width


def _column_margins(lines: Sequence[Line]) -> dict[int, tuple[float, float]]:
    """Per column of the page (the whole page when it has one), where its text's right margin is and how
    wide it is: a line ending well before that margin ends its paragraph."""
    margins = {}
    for column in {ln.column for ln in lines}:
        ends = sorted(ln.x1 for ln in lines if ln.column == column)
        right_edge = ends[int(0.9 * (len(ends) - 1))]
        margins[column] = (right_edge, max(1.0, right_edge - min(ln.x0 for ln in lines if ln.column == column)))
    return margins


def _dehyphenate(before: str, after: str, hyphenated: Counter[str]) -> str | None:
    """`before` joined with the next line `after` when `before` ends in a word broken by a hyphen: without
    the hyphen, unless the document writes the whole word with it; None when no word was broken."""
    if before.endswith(_SOFT_HYPHENS):
        return before[:-1] + after
    end = _WORD_HYPHEN.search(before)
    start = _NEXT_WORD.match(after)
    if end is None or start is None:
        return None
    whole = f"{end.group(1)}-{start.group(1)}".lower()
    if hyphenated[whole] > 0:
        return before + after
    return before[:-1] + after
