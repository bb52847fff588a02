"""Text that keeps the document's structure: HTML as the reader sees it, PDF pages without their furniture,
sections with their heading paths, chunks that follow sections, and sentences of technical text.

The HTML pages below are written here in the shapes of the documentation generators real manuals come
from (Sphinx, DocBook, AsciiDoc), with their navigation and chrome; the PDFs are typeset by fpdf2 with
running heads, page numbers, a table of contents, hyphenation and columns (tests/docgen.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.html import html_sections, html_to_text
from ingest.parsers import ParseOptions, markdown_sections, parser_for, rst_sections
from rag.sentences import evidence_blocks, split_sentences
from tests import docgen

SPHINX = """<!DOCTYPE html><html><head><title>shelf — Keep things on shelves — Docs 3.1</title></head><body>
<div class="related" role="navigation"><ul><li><a href="index.html">index</a></li><li><a href="x.html">next</a> |</li>
<li><a href="y.html">previous</a> |</li></ul></div>
<div class="document"><div class="documentwrapper"><div class="bodywrapper"><div class="body" role="main">
<section id="shelf"><h1>shelf — Keep things on shelves<a class="headerlink" href="#shelf">¶</a></h1>
<p>The <a href="#shelf.put"><code class="xref"><span class="pre">put()</span></code></a> function stores an
<em>item</em> on the shelf named by <code>name</code>, creating it when needed.</p>
<section id="functions"><h2>Functions<a class="headerlink" href="#functions">¶</a></h2>
<dl class="py function"><dt class="sig" id="shelf.put"><span class="sig-prename">shelf.</span><span class="sig-name">put</span>(<em>item</em>, <em>name</em>, <em>timeout=30</em>)<a class="headerlink" href="#">¶</a></dt>
<dd><p>Put <em>item</em> on shelf <em>name</em>. The <em>timeout</em> defaults to
30 seconds.</p></dd></dl>
<dl class="py function"><dt class="sig" id="shelf.take"><span class="sig-prename">shelf.</span><span class="sig-name">take</span>(<em>name</em>)</dt>
<dd><p>Take the newest item from shelf <em>name</em>. """ + "It waits when the shelf is empty. " * 20 + """</p>
<p>Raises <code>EmptyShelf</code> after the timeout.</p></dd></dl>
<p>Both functions are thread-safe.</p>
<table class="docutils"><thead><tr><th>Setting</th><th>Default</th></tr></thead>
<tbody><tr><td><code>timeout</code></td><td>30 s</td></tr><tr><td>retries</td><td>3</td></tr></tbody></table>
<div class="highlight"><pre>shelf.put(box, "top")
    # indented comment
shelf.take("top")</pre></div>
</section></section></div></div></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3><ul><li>shelf</li></ul></div></div>
<div class="footer">© Copyright 2026. Last updated on Nov 30.</div></body></html>"""

DOCBOOK = """<html><head><title>Chapter 4. Backups</title></head><body>
<div class="navheader"><table summary="Navigation header"><tr><th colspan="3">Chapter 4. Backups</th></tr>
<tr><td><a href="ch03.html">Prev</a></td><td></td><td><a href="ch05.html">Next</a></td></tr></table></div>
<div class="chapter"><div class="titlepage"><h1 class="title">Chapter 4. Backups</h1></div>
<div class="toc"><p><b>Table of Contents</b></p><dl class="toc"><dt>4.1. Retention</dt></dl></div>
<div class="section"><div class="titlepage"><h2 class="title">4.1. Retention</h2></div>
<div class="tip"><table border="0" summary="Tip"><tr><td rowspan="2"><img src="tip.png" alt="[Tip]"></td><th>Tip</th></tr>
<tr><td><p>Keep one copy <span class="emphasis"><em>off site</em></span>.</p></td></tr></table></div>
<p>Nightly copies are kept for <code class="literal">30</code> days.</p></div></div>
<div class="navfooter"><table summary="Navigation footer"><tr><td><a href="ch03.html">Prev</a></td><td><a href="index.html">Home</a></td></tr></table></div>
</body></html>"""

ASCIIDOC = """<html><head><title>tool-sync(1)</title></head><body>
<div id="header"><h1>tool-sync(1) Manual Page</h1><h2>NAME</h2><div class="sectionbody"><p>tool-sync -
   Mirror a folder</p></div></div>
<div id="content"><div class="sect1"><h2 id="_options">OPTIONS</h2><div class="sectionbody"><div class="dlist"><dl>
<dt class="hdlist1">-n</dt><dt class="hdlist1">--dry-run</dt><dd><p>Show what would be copied,
   copy nothing.</p></dd>
<dt class="hdlist1">--delete</dt><dd><p>Delete files that are gone from the source.</p>
<div class="ulist"><ul><li><p>Never on the first run.</p></li></ul></div></dd>
</dl></div></div></div></div>
<div id="footer"><div id="footer-text">Last updated 2026-11-30</div></div></body></html>"""

# Apache httpd's manual: a site header and a breadcrumb trail no chrome name marks, language switchers above and
# below, a box listing the page's directives, and a "¶" link in every directive's heading
APACHE = """<html lang="fr"><head><title>core - Serveur HTTP Apache Version 2.4</title></head><body>
<div id="page-header"><p class="menu"><a href="../mod/">Modules</a> | <a href="../glossary.html">Glossaire</a></p>
<p class="apache">Serveur HTTP Apache Version 2.4</p></div>
<div id="path"><a href="https://www.apache.org/">Apache</a> &gt; <a href="../">Serveur HTTP</a> &gt;
<a href="../">Documentation</a> &gt; <a href="./">Modules</a></div>
<div id="page-content"><div id="preamble"><h1>Fonctionalités de base</h1>
<div class="toplang"><p><span>Langues Disponibles: </span><a href="core.html.de">de</a> | <a href="core.html.en">en</a></p></div>
<table class="module"><tr><th>Description:</th><td>Fonctionnalités de base toujours disponibles</td></tr></table></div>
<div id="quickview"><h3 class="directives">Directives</h3><ul><li><a href="#keepalivetimeout">KeepAliveTimeout</a></li></ul></div>
<div class="directive-section"><h2 id="keepalivetimeout">Directive KeepAliveTimeout
<a title="Lien permanent" href="#keepalivetimeout" class="permalink">&para;</a></h2>
<table class="directive"><tr><th>Défaut:</th><td><code>KeepAliveTimeout 5</code></td></tr></table>
<p>Le nombre de secondes pendant lesquelles le serveur attend une requête ultérieure.</p></div></div>
<div class="bottomlang"><p><span>Langues Disponibles: </span><a href="core.html.de">de</a></p></div>
<div id="footer"><p class="apache">Copyright 2023 The Apache Software Foundation.</p></div></body></html>"""


def text_of(sections) -> str:  # type: ignore[no-untyped-def]
    return "\n\n".join(s.text for s in sections)


def test_html_sentences_stay_whole_and_chrome_goes() -> None:
    title, sections = html_sections(SPHINX)
    text = text_of(sections)
    assert title.startswith("shelf — Keep things")
    # inline elements (a link around code, emphasis) stay inside their sentence
    assert "The put() function stores an item on the shelf named by name, creating it when needed." in text
    for chrome in ("previous", "index", "Table of Contents", "Copyright", "¶"):
        assert chrome not in text
    # a short definition keeps its term; a long one (an API entry) becomes a section of its own
    assert "shelf.put(item, name, timeout=30): Put item on shelf name. The timeout defaults to 30 seconds." in text
    take = next(s for s in sections if s.heading[-1:] == ("shelf.take(name)",))
    assert take.heading == ("Functions", "shelf.take(name)") and "Raises EmptyShelf after the timeout." in take.text
    after = next(s for s in sections if "Both functions are thread-safe." in s.text)
    assert after.heading == ("Functions",)  # what follows the entry is back in its section
    assert "Setting: timeout · Default: 30 s" in after.text and "Setting: retries · Default: 3" in after.text
    assert 'shelf.put(box, "top")\n    # indented comment\nshelf.take("top")' in after.text  # code verbatim


# Sphinx writes every table cell's text in a paragraph, multi-line values in line blocks (Python's strftime
# table); DocBook lays an admonition out as a table, an icon beside a "Note" header, over its paragraphs.
SPHINX_TABLE = """<html><head><title>Formats</title></head><body><section><h1>Format codes</h1>
<table class="docutils align-default"><thead><tr class="row-odd"><th class="head"><p>Directive</p></th>
<th class="head"><p>Meaning</p></th><th class="head"><p>Example</p></th></tr></thead><tbody>
<tr class="row-even"><td><p><code class="docutils literal"><span class="pre">%V</span></code></p></td>
<td><p>ISO 8601 week as a decimal number with Monday as the first day of the week.</p></td>
<td><div class="line-block"><div class="line">01, 02, …, 53</div></div></td></tr></tbody></table>
<div class="note"><table border="0" summary="Note"><tr><td rowspan="2"><img alt="[Note]" src="note.png"/></td>
<th align="left">Note</th></tr><tr><td><p>Weeks start on Monday.</p><p>Week 01 holds January 4.</p></td></tr>
</table></div></section></body></html>"""


def test_a_sphinx_table_is_rows_named_by_their_columns_and_an_admonition_stays_prose() -> None:
    text = text_of(html_sections(SPHINX_TABLE)[1])
    assert ("Directive: %V · Meaning: ISO 8601 week as a decimal number with Monday as the first day of the week."
            " · Example: 01, 02, …, 53") in text
    assert "Weeks start on Monday.\n\nWeek 01 holds January 4." in text and "Note:" not in text


def test_docbook_and_asciidoc_pages() -> None:
    title, sections = html_sections(DOCBOOK)
    text = text_of(sections)
    assert "Prev" not in text and "Next" not in text and "Table of Contents" not in text
    assert sections[0].heading == ("4.1. Retention",)  # the chapter title is the page's title
    assert "Keep one copy off site." in text and "Nightly copies are kept for 30 days." in text
    title, sections = html_sections(ASCIIDOC)
    text = text_of(sections)
    assert "tool-sync - Mirror a folder" in text and "Last updated" not in text
    options = next(s for s in sections if s.heading == ("OPTIONS",))
    assert "-n, --dry-run: Show what would be copied, copy nothing." in options.text
    assert "--delete: Delete files that are gone from the source.\n\n- Never on the first run." in options.text
    assert html_to_text(ASCIIDOC)[1].startswith("NAME\n\ntool-sync - Mirror a folder")
    title, sections = html_sections(APACHE)
    text = text_of(sections)
    for chrome in ("Apache > Serveur HTTP", "Langues Disponibles", "Copyright", "¶"):
        assert chrome not in text
    directive = next(s for s in sections if "Le nombre de secondes" in s.text)
    assert directive.heading == ("Fonctionalit\u00e9s de base", "Directive KeepAliveTimeout")
    assert "D\u00e9faut: | KeepAliveTimeout 5" in directive.text
    assert [s.heading for s in sections].count(("Fonctionalit\u00e9s de base", "Directives")) == 0  # the box of links


# A book's generated index as DocBook (DSSSL, upper-case classes, as Slony-I's and PostgreSQL's older manuals)
# and Sphinx write it: every term of the manual with links to its pages
DOCBOOK_INDEX = """<HTML><HEAD><TITLE>Index</TITLE></HEAD><BODY CLASS="INDEX"><DIV CLASS="NAVHEADER">Prev Next</DIV>
<DIV CLASS="INDEX"><H1 CLASS="INDEX"><A NAME="BOOKINDEX">Index</A></H1><DIV CLASS="INDEXDIV"><H2>C</H2><DL>
<DT>CONNRETRY, <A HREF="stmtstorepath.html">SLONIK STORE PATH</A></DT>
<DT>connection retries, <A HREF="slon-config.html">slon configuration</A></DT></DL></DIV></DIV></BODY></HTML>"""
SPHINX_INDEX = """<html><head><title>Index</title></head><body><div role="main"><h1 id="index">Index &#8211; E</h1>
<table style="width: 100%" class="indextable"><tr><td><ul><li><a href="library/errno.html">E2BIG (in module errno)</a>
</li><li><a href="library/errno.html">EACCES (in module errno)</a></li></ul></td></tr></table></div></body></html>"""
SPHINX_MODULE_INDEX = """<html><head><title>Python Module Index</title></head><body><div role="main">
<h1>Python Module Index</h1><table class="indextable modindextable"><tr><td><a href="library/shutil.html">shutil
</a> <em>High-level file operations, including copying.</em></td></tr></table></div></body></html>"""


def test_a_books_generated_index_is_left_out_and_a_module_index_kept() -> None:
    for page in (DOCBOOK_INDEX, SPHINX_INDEX):
        assert "CONNRETRY" not in html_to_text(page)[1] and "E2BIG" not in html_to_text(page)[1]
        assert "retries" not in html_to_text(page)[1] and "EACCES" not in html_to_text(page)[1]
    assert "High-level file operations" in html_to_text(SPHINX_MODULE_INDEX)[1]
    # a class named "index" on other elements is no index: Apache heads a section so; nor is a site's own
    # "index" box without DocBook's letter divisions (a wiki's landing page)
    page = '<html><body><h2 id="index">Index</h2><p>The DirectoryIndex directive names the files.</p></body></html>'
    assert "The DirectoryIndex directive names the files." in html_to_text(page)[1]
    landing = '<html><body><div class="index"><h1>Welcome</h1><p>Badges are renewed in spring.</p></div></body></html>'
    assert "Badges are renewed in spring." in html_to_text(landing)[1]


# Sphinx's root page: the book's table of contents (a toctree) under a line of its own; a section's index page
# the same below its introduction
SPHINX_CONTENTS = """<html><head><title>Python Documentation contents</title></head><body><div role="main">
<h1>Python Documentation contents</h1><div class="toctree-wrapper compound"><ul><li class="toctree-l1">
<a href="whatsnew/index.html">What's New in Python</a><ul><li class="toctree-l2"><a href="whatsnew/3.11.html">
What's New In Python 3.11</a></li></ul></li><li class="toctree-l1"><a href="library/shutil.html">shutil —
High-level file operations</a></li></ul></div></div></body></html>"""


def test_sphinxs_table_of_contents_is_navigation() -> None:
    from ingest.parsers import ParseOptions, parse_html

    contents = parse_html(SPHINX_CONTENTS.encode(), "contents.html", ParseOptions())
    assert contents.units == [] and "only navigation" in contents.nothing_to_index
    section = SPHINX_CONTENTS.replace('<div class="toctree-wrapper', "<p>The library reference describes the "
                                      "modules that ship with Python.</p><div class=\"toctree-wrapper")
    text = html_to_text(section)[1]
    assert "modules that ship with Python" in text and "High-level file operations" not in text


def test_hostile_nesting_does_not_overflow() -> None:
    deep = "<div>" * 50_000 + "deep text" + "</div>" * 50_000
    title, sections = html_sections(f"<html><body>{deep}<p>after</p></body></html>")
    assert "deep text" in text_of(sections)


def test_markdown_and_rst_sections() -> None:
    md = "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n```\n# not a heading\n```\n\n### Linux\n\nUse apt.\n\nUsage\n-----\n\nCall it.\n"
    assert markdown_sections(md) == [((), ""), (("Guide",), "\nIntro.\n"), (("Guide", "Install"),
                                     "\nRun it.\n\n```\n# not a heading\n```\n"), (("Guide", "Install", "Linux"),
                                     "\nUse apt.\n"), (("Guide", "Usage"), "\nCall it.\n")]
    rst = "=====\nGuide\n=====\n\nIntro.\n\nInstall\n=======\n\nRun it.\n\nLinux\n-----\n\nUse apt.\n\nUsage\n=====\n\nCall.\n"
    assert [h for h, _ in rst_sections(rst)] == [(), ("Guide",), ("Guide", "Install"), ("Guide", "Install", "Linux"),
                                                  ("Guide", "Usage")]


def test_docx_headings_lists_and_tables(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Handbook", 0)
    document.add_heading("Travel", 1)
    document.add_paragraph("Book through the portal.")
    document.add_paragraph("Economy below six hours", style="List Bullet")
    document.add_heading("Rates", 2)
    grid = document.add_table(rows=2, cols=2)
    for c, (a, b) in enumerate([("City", "Oslo"), ("Rate", "120 EUR")]):
        grid.cell(0, c).text, grid.cell(1, c).text = a, b
    document.save(str(tmp_path / "h.docx"))
    doc = parser_for(".docx")((tmp_path / "h.docx").read_bytes(), "h.docx", ParseOptions())
    assert doc.title == "Handbook"
    assert [(u.heading, u.text) for u in doc.units] == [
        (("Travel",), "Book through the portal.\n\n- Economy below six hours"),
        (("Travel", "Rates"), "City | Rate\n\nCity: Oslo · Rate: 120 EUR")]


LONG = ("Nightly backups are kept for thirty days on the primary storage array and then moved to tape, where the "
        "archive keeps each weekly copy for one year before the rotation overwrites it.")


def parse_pdf_file(path: Path):  # type: ignore[no-untyped-def]
    return parser_for(".pdf")(path.read_bytes(), path.name, ParseOptions())


def test_pdf_pages_lose_their_furniture_and_keep_sections(tmp_path: Path) -> None:
    path = docgen.write_manual_pdf(tmp_path / "m.pdf", [
        ("Backups", [("Retention", [LONG, "The prune job runs at 02:00 and logs to the con~figuration folder.", LONG]),
                     ("Restore", ["Restores need a ticket number from the service desk."])]),
        ("Networking", [("Firewall", ["Port 8443 is open to the office network only."])])],
        running_head="Operations Manual v2.1", contents=True, motto="Free Your Numbers", index=True)
    doc = parse_pdf_file(path)
    units = [(u.page, u.heading, u.text) for u in doc.units]
    # the title page's headings head no section: the title (the document's), nor the motto under it
    text = "\n".join(t for _, _, t in units)
    assert "Operations Manual" not in text and ". . ." not in text  # running heads, the contents and index pages
    assert not [t for _, _, t in units if len(t.strip()) == 1]  # nor the index's initials
    assert not any(line.strip().isdigit() for line in text.splitlines())  # page numbers
    assert "logs to the configuration folder." in text  # hyphenation at the line's end joined
    assert LONG in text  # a paragraph's lines joined into one
    assert (3, ("1 Backups", "Restore"), "Restores need a ticket number from the service desk.") in units
    assert (4, ("2 Networking", "Firewall"), "Port 8443 is open to the office network only.") in units


@pytest.mark.parametrize("columns", [2, 3])
def test_pages_set_in_columns_read_column_by_column(tmp_path: Path, columns: int) -> None:
    # balanced columns, as multicol and TUGboat set them: each line has neighbours at the same height in
    # the other columns, across a gutter narrower than a word
    paragraphs = [f"{word} text opens paragraph {i} and goes on long enough to fill several lines of a narrow "
                  f"column before it stops. " * 4 for i, word in enumerate(["Alpha", "Kappa", "Omega"][:columns])]
    doc = parse_pdf_file(docgen.write_manual_pdf(tmp_path / "c.pdf", [("Layout", [("Columns", paragraphs)])],
                                                 columns=columns))
    [unit] = doc.units
    assert unit.text == "\n\n".join(p.strip() for p in paragraphs)  # each paragraph whole, in order


def test_an_article_page_reads_its_abstract_then_its_columns(tmp_path: Path) -> None:
    # an article's first page (TUGboat, LaTeX News): its abstract across the page, then two columns
    from fpdf import FPDF

    abstract = "This abstract runs across the whole width of the page above the columns. " * 4
    body = [f"{word} paragraph set in a column goes on long enough to fill several lines of it before it ends. " * 3
            for word in ("Alpha", "Kappa", "Omega")]
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    pdf.multi_cell(0, pdf.font_size, abstract.strip(), new_x="LMARGIN", new_y="NEXT", align="J")  # as the columns
    pdf.ln(4)
    with pdf.text_columns(ncols=2, gutter=4, text_align="J", balance=True) as columns:
        for text in body:
            columns.write(text=text.strip())
            columns.ln()
            columns.ln()
    pdf.output(str(tmp_path / "a.pdf"))
    [unit] = parse_pdf_file(tmp_path / "a.pdf").units
    assert unit.text == "\n\n".join([abstract.strip(), *(p.strip() for p in body)])


def test_text_far_off_the_page_costs_no_scan_of_its_width() -> None:
    # a hostile PDF can place text at any coordinate: the gutter scan (one counter a point) must not
    # follow it to 10^12 points
    from ingest.pdf_layout import Run, _reading_order

    runs = [Run(x, 700.0 - 12 * i, x + 200.0, 710.0 - 12 * i, f"line {i} of some text here", 10.0, 400)
            for i in range(12) for x in (-1e12 if i == 0 else 50.0, 1e12 if i == 1 else 300.0)]
    lines = _reading_order(runs)
    assert len(lines) == 12 and lines[2].text == "line 2 of some text here line 2 of some text here"


def test_a_table_of_terms_is_not_read_as_columns(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    rows = [(f"--option-{i}", f"Describes what option {i} does to the run, in words long enough to wrap onto a "
                              f"second line of the description column.") for i in range(12)]
    for term, description in rows:
        pdf.set_x(20)
        pdf.cell(40, 5, term)
        pdf.multi_cell(0, 5, description, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.output(str(tmp_path / "t.pdf"))
    text = "\n".join(u.text for u in parse_pdf_file(tmp_path / "t.pdf").units)
    for term, description in rows:  # each term with its description, as a definition list reads
        assert f"{term}: {description}" in " ".join(text.split())


def test_a_term_above_or_beside_its_description_is_read_with_it(tmp_path: Path) -> None:
    # Texinfo's @table (the bash and R manuals) and man pages set a long term on a line of its own, its
    # description indented under it, and a short one beside it; a paragraph's indented first line after a
    # short line is no such thing
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    description = ("If this is set, an argument to the cd builtin command that is not a directory is assumed to "
                   "be the name of a variable whose value is the directory to change to.")
    opening = "The shell options below are off unless set; each has a short name and a longer description."
    pdf.multi_cell(0, 5, opening, new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 5, "Short last line.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(pdf.l_margin + 8)  # a paragraph's first line indented, the rest at the margin
    pdf.multi_cell(0, 5, "A new paragraph starts here and runs on for long enough that it wraps back to the "
                         "left margin on its second line.", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for term in ("cdable_vars", "checkhash"):
        pdf.cell(0, 5, term, new_x="LMARGIN", new_y="NEXT")
        pdf.set_left_margin(pdf.l_margin + 20)
        pdf.multi_cell(0, 5, description, new_x="LMARGIN", new_y="NEXT")
        pdf.set_left_margin(pdf.l_margin - 20)
        pdf.ln(2)
    keys = [("^B", "move back a single character."), ("^F", "move forward a single character."),
            ("DEL", "delete the current character.")]
    for key, action in keys:  # a term beside its one-line description, the descriptions in one column
        pdf.cell(20, 5, key)
        pdf.cell(0, 5, action, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "d.pdf"))
    blocks = "\n".join(u.text for u in parse_pdf_file(tmp_path / "d.pdf").units).split("\n\n")
    assert f"cdable_vars: {description}" in blocks and f"checkhash: {description}" in blocks
    assert all(f"{key}: {action}" in blocks for key, action in keys)
    assert "Short last line." in blocks and "Short last line.:" not in "\n".join(blocks)


def test_a_term_an_em_from_its_description_is_read_with_it_and_a_name_in_the_margin_is_not(tmp_path: Path) -> None:
    # Texinfo's @table sets each term at the margin and its description in a column beside it: a short term
    # stands 1.5 em or more from it, a longer one ("globstar") only an em. A LaTeX manual sets a macro's name
    # in the margin, an em from the line of the paragraph that introduces it: no term, the sentence goes on.
    from fpdf import FPDF

    pdf = FPDF(unit="pt")
    pdf.add_page()
    left, column, y = 72.0, 136.0, 90.0

    def write(x: float, text: str, font: str = "Helvetica") -> None:
        pdf.set_font(font, size=10.9)
        pdf.text(x, y, text)

    items = [("autocd", "If set, a command name that is the name of a directory is executed as if",
              "it were the argument to the cd command."),
             ("globstar", "If set, the pattern ** used in a filename expansion context will match",
              "all files and zero or more directories and subdirectories."),
             ("nullglob", "If set, filename patterns which match no files expand to a null string,",
              "rather than themselves.")]
    for term, first, second in items:
        pdf.set_font("Courier", size=10.9)
        assert 0.5 * 10.9 < column - left - pdf.get_string_width(term) < 1.5 * 10.9 or term == "autocd"
        write(left, term, "Courier")
        write(column, first)
        y += 13.1
        write(column, second)
        y += 17.0
    y += 10
    write(column, "The package has two basic citation commands, one for textual citations and")
    y += 13.1
    pdf.set_font("Courier", size=10.9)
    write(column - pdf.get_string_width("\\citep") - 10.9, "\\citep", "Courier")  # an em from the text
    write(column, "the other for parenthetical ones; both take the keys of the works they cite.")
    y += 13.1
    write(column, "Each can also add a note before and after the citation, in square brackets.")
    pdf.output(str(tmp_path / "table.pdf"))
    blocks = [" ".join(b.split()) for b in
              "\n".join(u.text for u in parse_pdf_file(tmp_path / "table.pdf").units).split("\n\n")]
    for term, first, second in items:
        assert f"{term}: {first} {second}" in blocks
    assert any("citations and \\citep the other for parenthetical ones" in b for b in blocks)
    assert not any(b.startswith("\\citep:") for b in blocks)


def test_a_call_that_assigns_its_result_is_no_term(tmp_path: Path) -> None:
    # Octave's manual (Texinfo's @deftypefn) sets a function's calls one under the other above its description;
    # where a call assigns its result, "=" stands further from the result's name than a word space, as a term
    # stands from its description. The call, not "s", is the description's term.
    from fpdf import FPDF

    pdf = FPDF(unit="pt")
    pdf.add_page()
    left, column, y = 72.0, 101.0, 90.0
    pdf.set_font("Helvetica", size=12)
    for call in ("speye (m, n)", "speye (m)", "speye (sz)"):
        pdf.text(left, y, "s")
        pdf.text(left + 26, y, "= " + call)  # "=" two ems from "s"
        y += 13.1
    pdf.set_font("Helvetica", size=10.9)
    pdf.text(column, y, "Return a sparse identity matrix of size m by n.")
    y += 13.1
    pdf.text(column, y, "The implementation is significantly more efficient than sparse (eye (m)) as the full")
    y += 13.1
    pdf.text(column, y, "matrix is not constructed.")
    pdf.output(str(tmp_path / "calls.pdf"))
    blocks = [" ".join(b.split()) for b in
              "\n".join(u.text for u in parse_pdf_file(tmp_path / "calls.pdf").units).split("\n\n")]
    assert any(b.startswith("s = speye (sz): Return a sparse identity matrix of size m by n.") for b in blocks), blocks
    assert not any(b.startswith("s:") for b in blocks), blocks


def _texinfo_page(path: Path) -> Path:
    """A page set as Texinfo sets the bash and R manuals: justified lines at one baseline pitch, code in
    Courier inside the sentences (a line of it alone, "REPLY.", has no descenders), a wrapped line that
    begins "1) if", a numbered list after a colon, paragraphs 3 pt apart, a slanted argument in brackets, a
    function's signature above its description, a builtin's name above its synopsis."""
    from fpdf import FPDF

    pdf = FPDF(unit="pt")
    pdf.core_fonts_encoding = "windows-1252"  # the typographic quotes
    pdf.add_page()
    pitch, left, width = 13.1, 72.0, 420.0
    y = 72.0

    def line(*parts: tuple[str, str], full: bool = True, indent: float = 0.0) -> None:
        nonlocal y
        words = sum(len(text.split()) for _, text in parts)
        natural = sum(pdf.set_font(*font.split("/"), size=10.9) or pdf.get_string_width(text) for font, text in parts)
        assert natural < width - indent
        spacing = (width - indent - natural) / max(1, words - 1) if full else 0.0  # justified: spread to the margin
        x = left + indent
        for font, text in parts:
            pdf.set_font(*font.split("/"), size=10.9)
            for i, word in enumerate(text.split(" ")):
                if i:
                    x += pdf.get_string_width(" ") + spacing
                pdf.text(x, y, word)
                x += pdf.get_string_width(word)
        y += pitch

    h, c = "Helvetica", "Courier"
    line((h, "If EOF is read, the select command completes and returns 1. Any other value read"))
    line((h, "causes name to be set to null, and the commands run again after each new selection"))
    line((h, "is made until a break command is executed. The line read is then stored in the variable"))  # no descender
    line((c, "REPLY."), full=False)
    y += 3.1  # Texinfo's space between paragraphs
    line((h, "Redirection of output in this fashion opens the file for appending on the descriptor"))
    line((h, "n, or on the standard output of the shell, which is the default one (file descriptor"))
    line((h, "1) if n is not specified. If the file does not exist it is created."), full=False)
    y += 3.1
    line((h, "Conditional operators such as \u2018"), (c, "-f"),
         (h, "\u2019 must be unquoted to be recognized as primaries"))
    line((h, "by the shell, and they are tested in the order given below, from left to right:"), full=False)
    line((h, "1. files first;"), full=False)
    line((h, "2. strings next."), full=False)
    y += 3.1
    line((h, "mapfile ["), ("Courier/I", "array"), (h, "] reads lines into an indexed array."), full=False)
    y += 3.1
    line((c, "spy (x)"), full=False)  # a function's signature, its description of one sentence set in under it
    line((h, "Plot the sparsity pattern of the sparse matrix x."), full=False, indent=28.0)
    y += 9.0
    # a term whose description begins with it, wrapped as far in: a term, not an entry with a synopsis
    line((h, "LANGUAGE"), full=False)
    line((h, "LANGUAGE is not specified by Posix, but it is a GNU extension that"), indent=32.0)
    line((h, "overrides LC_ALL in some cases, so set it too."), full=False, indent=32.0)
    y += 9.0
    # a builtin as bash's manual lists it: its name, its synopsis set in further, its description between
    line((c, "readarray"), full=False)
    line((c, "readarray [-d delim] [-n count] [array]"), full=False, indent=48.0)
    line((h, "Read lines from the standard input into the indexed array variable array, or"), indent=32.0)
    line((h, "from file descriptor fd if the -u option is supplied."), full=False, indent=32.0)
    pdf.output(str(path))
    return path


def test_texinfo_paragraphs_hold_their_code_words_and_wrapped_numbers(tmp_path: Path) -> None:
    # the boxes of a line's letters put the space above a line of capitals and code ("REPLY.", no descenders)
    # for a paragraph's; a wrapped line beginning "1) if" was read as a list item; a space was put between
    # the quote marks and the code they quote, whose fonts leave a gap between their letters' boxes
    blocks = "\n\n".join(u.text for u in parse_pdf_file(_texinfo_page(tmp_path / "t.pdf")).units).split("\n\n")
    assert blocks[0].endswith("The line read is then stored in the variable REPLY.")
    assert blocks[1].startswith("Redirection of output") and blocks[1].endswith(
        "(file descriptor 1) if n is not specified. If the file does not exist it is created.")
    assert blocks[2].startswith("Conditional operators such as \u2018-f\u2019 must be unquoted")
    assert blocks[3:5] == ["1. files first;", "2. strings next."]
    # PDFium's text of a run reads a letter that only touches its edge: the slanted "y" came out twice
    assert blocks[5] == "mapfile [array] reads lines into an indexed array."
    # the description names no function: read under its signature, as a definition list reads
    assert blocks[6] == "spy (x): Plot the sparsity pattern of the sparse matrix x."


def test_a_sentence_broken_by_a_page_break_is_read_whole(tmp_path: Path) -> None:
    # a page ends in the middle of a sentence, at the margin: the next page's first line goes on with it
    from fpdf import FPDF

    pdf = FPDF(unit="pt")
    pdf.set_font("Helvetica", size=10.9)

    def line(text: str, y: float, justified: bool = True) -> None:  # as TeX sets a line: spread to the margin
        gap = (400 - pdf.get_string_width(text)) / (len(text.split()) - 1) if justified else 0.0
        x = 72.0
        for word in text.split():
            pdf.text(x, y, word)
            x += pdf.get_string_width(word) + pdf.get_string_width(" ") + gap

    first = ["Readline asks whether the list of possible completions should be",
             "displayed when there are more of them than this variable says, and",
             "it asks this before it prints them, whether or not the user wishes to view"]
    pdf.add_page()
    for i, text in enumerate(first):
        line(text, 100 + 13.1 * i)
    pdf.add_page()
    line("them; otherwise, they are simply listed. The default limit is 100.", 100, justified=False)
    line("convert-meta: If set to on, Readline converts characters with the eighth bit", 116.2)
    line("set to an ASCII key sequence by stripping the eighth bit and prefixing an", 129.3)
    line("escape character, converting them to a meta-prefixed key sequence. The", 142.4)
    line("default value is on.", 155.5, justified=False)
    pdf.output(str(tmp_path / "broken.pdf"))
    units = parse_pdf_file(tmp_path / "broken.pdf").units
    blocks = "\n\n".join(u.text for u in units).split("\n\n")
    assert blocks[0] == " ".join(first) + " them; otherwise, they are simply listed. The default limit is 100."
    assert units[0].page == 1  # cited where the sentence starts
    assert blocks[1].startswith("convert-meta: If set")  # a term opens an entry of its own


def test_texinfo_builtin_name_heads_its_entry(tmp_path: Path) -> None:
    # bash's manual sets a builtin's name on a line of its own, its synopsis further in below it and the
    # description less far in: read as one paragraph after another, the name headed no sentence of the
    # description, and a quote of it named no builtin ("Read lines from the standard input ...")
    from rag.extractive import section_term
    from rag.types import SECTION_SEPARATOR

    units = parse_pdf_file(_texinfo_page(tmp_path / "t.pdf")).units
    entry = units[-1]
    assert entry.heading[-1] == "readarray"
    assert entry.text.split("\n\n") == [
        "readarray [-d delim] [-n count] [array]",
        "Read lines from the standard input into the indexed array variable array, or from file descriptor fd "
        "if the -u option is supplied."]
    assert section_term(SECTION_SEPARATOR.join(entry.heading)) == "readarray"
    assert all("readarray" not in u.heading for u in units[:-1])  # the text above it is not its entry's
    assert all("LANGUAGE" not in u.heading for u in units)
    assert "LANGUAGE: LANGUAGE is not specified by Posix, but it is a GNU extension that overrides" in units[-2].text


def test_chunks_follow_sections_and_carry_their_heading_path(tmp_path: Path) -> None:
    from ingest.chunking import Chunker
    from ingest.parsers import TextUnit
    from rag.embedding.base import default_embedding_folder

    chunker = Chunker(default_embedding_folder(), 60, 8, 256)
    units = [TextUnit("Tiny intro.", heading=("Guide",)),
             TextUnit("HOOKS text is short.", heading=("Guide", "HOOKS")),
             TextUnit("FILES text is short too.", heading=("Guide", "FILES")),
             TextUnit(" ".join(["A long section about retention policies and their many exceptions."] * 12),
                      heading=("Guide", "Retention")),
             TextUnit("After it.", page=2, heading=("Guide", "End"))]
    pieces = chunker.split_units(units)
    assert pieces[0].section == "Guide" and pieces[0].text == ("Tiny intro.\n\nHOOKS\n\nHOOKS text is short.\n\n"
                                                               "FILES\n\nFILES text is short too.")
    retention = [p for p in pieces if p.section == "Guide › Retention"]
    assert len(retention) >= 2 and retention[0].text.startswith("A long section")  # the heading starts a chunk
    assert pieces[-1].page == 2 and pieces[-1].section == "Guide › End"


@pytest.mark.parametrize("text, sentences", [
    ("Use os.path.join() here, e.g. for paths. See Fig. 3 on p. 56.",
     ["Use os.path.join() here, e.g. for paths.", "See Fig. 3 on p. 56."]),
    ("Set gc.auto to 0. alias is the alias name. The default is 6700.",
     ["Set gc.auto to 0.", "alias is the alias name.", "The default is 6700."]),
    ("Run it (see git-commit(1).) and wait. (It may take a while.) Done.",
     ["Run it (see git-commit(1).) and wait.", "(It may take a while.)", "Done."]),
    ("Drücken Sie z.B. Strg-C, d.h. beide Tasten. Dann ist es fertig.",
     ["Drücken Sie z.B. Strg-C, d.h. beide Tasten.", "Dann ist es fertig."]),
    ("Use if... elif... else. For values, use a dict.", ["Use if... elif... else.", "For values, use a dict."]),
    ('It fails on pardir (eg. ".." on Unix), ie. a parent. It works.',
     ['It fails on pardir (eg. ".." on Unix), ie. a parent.', "It works."]),
])
def test_sentences_of_technical_text(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def test_evidence_keeps_paragraphs_apart() -> None:
    text = ("gc.auto: When there are more loose objects than this, gc runs. The default value is 6700.\n\n"
            "gc.autoPackLimit: When there are more packs than this, they are combined.\n\n1.")
    assert evidence_blocks(text) == [
        ["gc.auto: When there are more loose objects than this, gc runs.", "The default value is 6700."],
        ["gc.autoPackLimit: When there are more packs than this, they are combined."]]


def test_the_heading_path_reaches_search_the_model_and_the_sources(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ingest.job import run_ingest
    from rag.prompt import passage_text
    from rag.qa import QAService
    from rag.search import Searcher
    from rag.index import IndexReader
    from tests.conftest import scripted_generator

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "shelf.html").write_text(SPHINX, encoding="utf-8")
    settings = make_settings(answer_mode="extractive")
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    hit = searcher.search("What does shelf.take raise when the shelf stays empty?", 1).hits[0]
    assert hit.section == "Functions › shelf.take(name)" and hit.metadata()["section"] == hit.section
    assert passage_text(hit).startswith("(Functions › shelf.take(name))\n")  # what the model reads
    service = QAService(searcher, scripted_generator("unused"), settings.answers)
    answer = service.ask("How long is the default timeout of shelf.put?")
    assert "The timeout defaults to 30 seconds." in answer.answer
    answer = service.ask("What does shelf.take do when the shelf is empty?")
    assert "It waits when the shelf is empty." in answer.answer
    # neighbouring chunks were merged into one passage, which keeps its first chunk's heading path
    [cited] = [s for s in answer.sources if s.cited]
    assert hit.chunk_id in cited.chunk_ids and answer.to_dict()["sources"][0]["section"] == cited.section


def test_tex_math_symbols_given_only_as_codes_read_as_themselves(tmp_path: Path) -> None:
    path = docgen.write_tex_symbols_pdf(tmp_path / "geometry.pdf")
    text = "\n".join(unit.text for unit in parse_pdf_file(path).units)
    # (fpdf2's Courier leaves gaps a space wide around its glyphs; pdfTeX's brackets abut their argument)
    assert "bindingoffset=⟨length⟩ adds a length" in text.replace("⟨ ", "⟨").replace(" ⟩", "⟩")
    assert "which helps with a binding." in text  # the text font's h and i stay letters
