"""HTML as the reader sees it: sentences whole, blocks on their own lines, sections with their headings.

Documentation sites write one sentence across many elements (a `<code>`, a link, an application name);
joining every text node with a newline, as a plain text dump does, breaks that sentence into a dozen
lines that no sentence splitter, quote or embedding can read. Here inline elements stay inside their
sentence, and block elements (paragraphs, list items, table cells, definitions, code, headings) end a
line. Definition lists keep term and description together ("--amend: Replace the tip of the current
branch ..."), table rows keep their column names ("Setting: timeout · Default: 30 s"), code blocks keep
their lines, and headings cut the page into sections whose heading path travels with every passage.
Navigation, breadcrumbs, "Prev | Up | Next" bars, sidebars and footers are removed by the markup that
marks them (roles, HTML5 elements, and the class and id names of the common documentation generators:
Sphinx, DocBook, AsciiDoc, MkDocs, Apache's manual), and a breadcrumb trail above the first heading by its
shape ("Apache > HTTP Server > Documentation").

The walk is iterative (no recursion limit for hostile nesting) over selectolax's Lexbor tree, which is
fast, permissively licensed and already parses our HTML: trafilatura, measured against it on the
documentation dev sets, is written for news articles (docs/benchmarks.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# removed with everything inside them
_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "object", "embed", "canvas", "button",
              "select", "input", "textarea", "nav", "head", "link", "meta", "dialog")
_DROP_SELECTORS = ("[role=navigation]", "[role=banner]", "[role=contentinfo]", "[role=search]", "[hidden]",
                   "[aria-hidden=true]")
# class or id names (whole names, not parts: "footnote" is content) of site chrome in documentation generators
CHROME_NAMES = frozenset({
    "nav", "navbar", "navigation", "navheader", "navfooter", "breadcrumb", "breadcrumbs", "sidebar",
    "sphinxsidebar", "sphinxsidebarwrapper", "related", "footer", "site-footer", "site-header", "toc", "menu",
    "menu-wrapper", "mobile-nav", "pagination", "skip-link", "skiplink", "headerlink", "inline-search",
    "searchbox", "version_switcher_placeholder", "language_switcher_placeholder", "md-header", "md-footer",
    "md-sidebar", "md-tabs", "wy-nav-side", "rst-footer-buttons", "prev-next", "edit-this-page", "cookie-banner",
    "permalink", "quickview", "toplang", "bottomlang",  # a heading's "¶" link (Apache's, Hugo's); Apache's chrome
    "toctree-wrapper",  # Sphinx's table of contents of the pages below ("contents.html", a section's index page)
})
# the content root where the page marks it (Sphinx marks its body role=main); else the body, chrome removed
_MAIN_SELECTORS = ("main", "[role=main]", "article")
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
# elements that end a line (everything else is inline: its text joins the sentence around it)
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "center", "details", "dialog", "dd", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "html", "legend", "li", "main",
    "menu", "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    "caption", "h1", "h2", "h3", "h4", "h5", "h6", "listing", "plaintext", "xmp", "option", "optgroup",
})
_BREAK = "\u2028"  # a <br> inside a block: kept as a line break after white space is collapsed
_SPACES = re.compile(r"[ \t\n\r\f\v\u00a0\u200b]+")
# a description longer than this makes its term a heading of its own (a function in an API reference)
TERM_HEADING_CHARS = 600
ROW_SEPARATOR = " · "
# a breadcrumb trail: three or more short steps, each capitalised, joined by ">", "›" or "»" ("Apache > HTTP
# Server > Documentation")
_BREADCRUMB = re.compile(r"^[A-Z0-9À-Ý][^>›»\n]{0,39}(?:\s[>›»]\s[A-Z0-9À-Ý][^>›»\n]{0,39}){2,}$")


@dataclass
class Section:
    """Text under one heading path, as blocks (paragraphs, list items, rows, code) in reading order."""

    heading: tuple[str, ...]
    blocks: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(self.blocks)


def _names(node) -> set[str]:  # type: ignore[no-untyped-def]
    attrs = node.attributes
    names = set((attrs.get("class") or "").lower().split())
    if attrs.get("id"):
        names.add(str(attrs["id"]).lower())
    return names


def _remove_chrome(tree) -> None:  # type: ignore[no-untyped-def]
    for tag in _DROP_TAGS:
        for node in tree.css(tag):
            node.decompose()
    for selector in _DROP_SELECTORS:
        for node in tree.css(selector):
            node.decompose()
    doomed = []
    for node in tree.css("[class], [id]"):
        if _names(node) & CHROME_NAMES:
            doomed.append(node)
    # a book's generated index: its terms, each with links to the pages about it, in DocBook's
    # <div class="index"> of <div class="indexdiv"> letters (PostgreSQL's and Slony's bookindex.html; a site's
    # own "index" box without them is content) and Sphinx's genindex pages' table (class "indextable"; its
    # module index, a module's name with its summary, is kept). Every term of the manual in one place, it
    # matched many questions and took search results' places, and it answers none: the page it links to does.
    for node in tree.css("div[class], table[class]"):
        names = _names(node)
        if ((node.tag == "div" and "index" in names
             and any("indexdiv" in _names(part) for part in node.css("div[class]")))
                or (node.tag == "table" and "indextable" in names and "modindextable" not in names)):
            doomed.append(node)
    for node in doomed:
        try:
            node.decompose()
        except Exception:  # already gone with an ancestor
            pass
    # page headers and footers of the site, not those inside an article
    for tag in ("header", "footer", "aside"):
        for node in tree.css(tag):
            parent, inside = node.parent, False
            while parent is not None:
                if parent.tag in ("main", "article"):
                    inside = True
                    break
                parent = parent.parent
            if not inside:
                node.decompose()


def _inline_text(node) -> str:  # type: ignore[no-untyped-def]
    """The text of an element as one line (its block children joined by spaces)."""
    parts: list[str] = []
    for child in node.traverse(include_text=True):
        if child.tag == "-text":
            parts.append(child.text_content or "")
        elif child.tag == "br":
            parts.append(" ")
        elif child.tag in _BLOCKS:
            parts.append(" ")
    return normalise("".join(parts))


def normalise(text: str) -> str:
    """White space collapsed to single spaces, <br> kept as line breaks."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.split(_BREAK)]
    return "\n".join(line for line in lines if line)


_CELL_BLOCKS = "div, pre, ul, ol, dl, table, blockquote, h1, h2, h3, h4, h5, h6"
_HEADED_CELL_BLOCKS = "table, pre, ul, ol, dl, h1, h2, h3, h4, h5, h6"


def _has_header_row(table) -> bool:  # type: ignore[no-untyped-def]
    """Whether the table's first row heads two or more columns (all <th>, or in <thead>)."""
    first = table.css_first("tr")
    if first is None:
        return False
    cells = [c for c in first.iter() if c.tag in ("td", "th")]
    in_head = first.parent is not None and first.parent.tag == "thead"
    return len(cells) >= 2 and (in_head or all(c.tag == "th" for c in cells))


def _is_layout_table(table) -> bool:  # type: ignore[no-untyped-def]
    """A table used to lay out blocks (an admonition's icon beside its text, a page's columns), not data.
    Under a header row a table is data unless a cell holds a table, a list, a heading or code: Sphinx wraps
    every cell's text in a paragraph, and multi-line values in line blocks ("Directive | Meaning | Example").
    Without one, a cell holding any block (a paragraph included) makes it layout: DocBook's admonitions put
    a "Note" <th> beside an icon's <td>, no header row, over their paragraphs."""
    cells = table.css("td, th")
    if _has_header_row(table):  # columns named: data, unless a cell holds a table, a list, a heading or code
        return any(cell.css_first(_HEADED_CELL_BLOCKS) is not None for cell in cells)
    return any(cell.css_first(f"p, {_CELL_BLOCKS}") is not None for cell in cells)


def table_rows(table) -> list[str]:  # type: ignore[no-untyped-def]
    """A data table's rows as lines, each cell named by its column ("Setting: timeout · Default: 30 s");
    a table without a header row gives its cells joined by " | "."""
    rows: list[list[str]] = []
    header: list[str] | None = None
    for tr in table.css("tr"):
        # only this table's own rows, not those of a table nested in a cell
        owner = tr.parent
        while owner is not None and owner.tag != "table":
            owner = owner.parent
        if owner is not None and owner.mem_id != table.mem_id:
            continue
        cells = [c for c in tr.iter() if c.tag in ("td", "th")]
        values = [_inline_text(c) for c in cells]
        if not any(values):
            continue
        if header is None and not rows and cells and all(c.tag == "th" for c in cells):
            header = values
            continue
        if header is None and not rows and tr.parent is not None and tr.parent.tag == "thead":
            header = values
            continue
        rows.append(values)
    caption = table.css_first("caption")
    lines = [_inline_text(caption)] if caption is not None and _inline_text(caption) else []
    for values in rows:
        if header and len(header) == len(values):
            pairs = [f"{h}: {v}" if h else v for h, v in zip(header, values) if v]
            lines.append(ROW_SEPARATOR.join(pairs))
        else:
            lines.append(" | ".join(v for v in values if v))
    return lines


class _Walker:
    """Turns the content root into sections of blocks."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.sections: list[Section] = [Section(())]
        self.levels: list[int] = []  # heading level of each entry of the current path
        self.inline: list[str] = []
        self.prefix = ""  # a list item's marker, put before its first block

    # -- output -----------------------------------------------------------------------------------
    def flush(self) -> None:
        text = normalise("".join(self.inline))
        self.inline = []
        if text:
            self.add(text)

    def add(self, block: str) -> None:
        if self.prefix:
            block, self.prefix = self.prefix + block, ""
        if not self.levels and _BREADCRUMB.match(block):
            return  # a trail above the page's first heading, in markup no chrome name marks
        self.sections[-1].blocks.append(block)

    def heading(self, level: int, text: str) -> None:
        self.flush()
        if not text:
            return
        current = self.sections[-1]
        path = list(current.heading)
        levels = self.levels
        while levels and levels[-1] >= level:
            levels.pop()
            path.pop()
        if not path and _same_as_title(text, self.title):
            text = ""  # the page's own title heads every section already
        if text:
            path.append(text)
            levels.append(level)
        if current.blocks or tuple(path) != current.heading:
            if current.blocks:
                self.sections.append(Section(tuple(path)))
            else:
                current.heading = tuple(path)

    # -- the walk ---------------------------------------------------------------------------------
    def walk(self, root) -> list[Section]:  # type: ignore[no-untyped-def]
        # an explicit stack of (node, entering?) instead of recursion: hostile nesting cannot overflow it
        stack: list[tuple[object, bool]] = [(root, True)]
        while stack:
            node, entering = stack.pop()
            tag = node.tag  # type: ignore[attr-defined]
            if not entering:
                self.leave(node, tag)
                continue
            if tag == "-text":
                self.inline.append(node.text_content or "")  # type: ignore[attr-defined]
                continue
            if tag == "br":
                self.inline.append(_BREAK)
                continue
            if tag == "-comment" or tag is None:
                continue
            if self.enter(node, tag):
                continue  # handled whole
            stack.append((node, False))
            children = list(node.iter(include_text=True))  # type: ignore[attr-defined]
            stack.extend((child, True) for child in reversed(children))
        self.flush()
        return [s for s in self.sections if s.blocks]

    def enter(self, node, tag: str) -> bool:  # type: ignore[no-untyped-def]
        """Start an element; True when it was rendered whole (its children need no walk)."""
        if tag in _HEADINGS:
            self.heading(_HEADINGS[tag], _inline_text(node))
            return True
        if tag == "pre" or tag in ("listing", "xmp", "plaintext"):
            self.flush()
            code = (node.text(deep=True, separator="", strip=False) or "").strip("\n")
            lines = [line.rstrip() for line in code.replace("\r\n", "\n").split("\n")]
            if any(lines):
                self.add("\n".join(lines))
            return True
        if tag == "table":
            self.flush()
            if _is_layout_table(node):
                return False
            for line in table_rows(node):
                self.add(line)
            return True
        if tag == "dl":
            self.flush()
            self.definitions(node)
            return True
        if tag == "li":
            self.flush()
            parent = node.parent
            self.prefix = "- " if parent is None or parent.tag != "ol" else f"{self._item_number(node)}. "
            return False
        if tag == "hr":
            self.flush()
            return True
        if tag in _BLOCKS:
            self.flush()
        return False

    def leave(self, node, tag: str) -> None:  # type: ignore[no-untyped-def]
        if tag in _BLOCKS:
            self.flush()
            if tag == "li":
                self.prefix = ""

    @staticmethod
    def _item_number(node) -> int:  # type: ignore[no-untyped-def]
        number, sibling = 1, node.prev
        while sibling is not None:
            if sibling.tag == "li":
                number += 1
            sibling = sibling.prev
        return number

    def definitions(self, dl) -> None:  # type: ignore[no-untyped-def]
        """Term and description together: "term: description"; consecutive terms share a description
        ("-a, --all: ..."). A long description (an API entry) makes its term a heading of its own."""
        terms: list[str] = []
        level = (self.levels[-1] if self.levels else 1) + 1
        heading_before = self.sections[-1].heading
        levels_before = list(self.levels)
        made_headings = False
        for child in dl.iter():
            if child.tag == "dt":
                term = _inline_text(child)
                if term:
                    terms.append(term)
            elif child.tag == "dd":
                term = ", ".join(terms)
                terms = []
                long = len(child.text(deep=True) or "") > TERM_HEADING_CHARS
                if long and term:
                    self.heading(min(level, 7), term)
                    made_headings = True
                    sub = _Walker(self.title)
                    sub.levels, sub.sections = list(self.levels), [Section(self.sections[-1].heading)]
                    for section in sub.walk(child):
                        if section.heading == self.sections[-1].heading:
                            self.sections[-1].blocks.extend(section.blocks)
                        else:
                            self.sections.append(section)
                    continue
                if self.sections[-1].heading != heading_before:  # back from an entry that had its own heading
                    self.flush()
                    self.levels = list(levels_before)
                    self.sections.append(Section(heading_before))
                sub = _Walker(self.title)
                blocks = [b for s in sub.walk(child) for b in s.blocks]
                if term and blocks:
                    self.add(f"{term}: {blocks[0]}")
                    for block in blocks[1:]:
                        self.add(block)
                elif term:
                    self.add(term)
                else:
                    for block in blocks:
                        self.add(block)
        if terms:
            self.add(", ".join(terms))
        if made_headings and self.sections[-1].heading != heading_before:
            self.flush()  # what follows the list belongs to the section the list was in
            self.levels = levels_before
            self.sections.append(Section(heading_before))


def _same_as_title(heading: str, title: str) -> bool:
    a, b = heading.strip().lower(), title.strip().lower()
    return bool(a) and (a == b or b.startswith(a) or a.startswith(b))


def html_sections(html: str) -> tuple[str, list[Section]]:
    """(title, sections) of an HTML page: site chrome removed, the main content's text kept whole."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = _inline_text(title_node) if title_node is not None else ""
    _remove_chrome(tree)
    root = None
    for selector in _MAIN_SELECTORS:
        root = tree.css_first(selector)
        if root is not None and _inline_text(root):
            break
        root = None
    root = root or tree.body or tree.root
    if root is None:
        return title, []
    if not title:
        heading = root.css_first("h1")
        title = _inline_text(heading) if heading is not None else ""
    return title, _Walker(title).walk(root)


NAVIGATION_ONLY = "the page holds only navigation (links, a table of contents or a generated index)"


def navigation_only(html: str) -> bool:
    """Whether a page whose main content gave no text (see `html_sections`) shows text all the same: links,
    menus, a table of contents or a book's generated index, all left out as navigation. Such a page is not
    indexed, and that is no fault; a page that shows no text at all is reported as one."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    for tag in ("head", "script", "style", "noscript", "template"):
        for node in tree.css(tag):
            node.decompose()
    root = tree.body or tree.root
    return root is not None and bool(_SPACES.sub("", root.text(deep=True)))


def html_to_text(html: str) -> tuple[str, str]:
    """(title, main text) of an HTML page: its sections' text, headings as their own lines."""
    title, sections = html_sections(html)
    parts = []
    for section in sections:
        if section.heading:
            parts.append(section.heading[-1])
        parts.append(section.text)
    return title, "\n\n".join(parts)
