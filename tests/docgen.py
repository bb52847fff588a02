"""Writers for every supported format, used by the tests and by scripts/make_samples.py."""

from __future__ import annotations

import email.message
import email.policy
import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


def write_pdf(path: Path, pages: list[str], title: str = "", password: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(auto=True, margin=15)
    if title:
        pdf.set_title(title)
    if password:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def write_manual_pdf(path: Path, chapters: list[tuple[str, list[tuple[str, list[str]]]]], running_head: str = "",
                     columns: int = 1, contents: bool = False, motto: str = "", index: bool = False) -> Path:
    """A typeset manual: per chapter (title, [(section heading, paragraphs)]), a new page each; headings in
    larger bold type; paragraphs justified in 10 pt, so lines reach the margin; `running_head` at the top of
    every page with the printed page number (pages counted from 1 after an unnumbered title page) and the
    number alone at the bottom; `columns`: each section's body in that many balanced, justified columns
    (a 4 mm gutter, about LaTeX's 10 pt: lines of neighbouring columns side by side at the same heights);
    `contents`: a table of contents page with dot leaders; `motto`: a line under the title on the title
    page, set larger than the chapters' titles; `index`: a last page indexing the sections' headings, under
    their initials, each with the pages it is on ("Restore . . . . . 2, 3"). A paragraph holding
    "soft~hyphen" has the word broken at a line end with a hyphen."""
    from fpdf import FPDF

    class Manual(FPDF):
        def header(self) -> None:
            if running_head and self.page_no() > 1:
                self.set_font("Helvetica", size=8)
                self.cell(0, 5, f"{running_head}    {self.page_no() - 1}", align="R")
                self.ln(8)

        def footer(self) -> None:
            if self.page_no() > 1:
                self.set_y(-12)
                self.set_font("Helvetica", size=8)
                self.cell(0, 5, str(self.page_no() - 1), align="C")

    pdf = Manual()
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 24)
    pdf.cell(0, 20, "The Manual", new_x="LMARGIN", new_y="NEXT")
    if motto:
        pdf.set_font("Helvetica", "B", 20)
        pdf.cell(0, 14, motto, new_x="LMARGIN", new_y="NEXT")
    if contents:
        pdf.add_page()
        pdf.set_font("Helvetica", size=10)
        for number, (title, sections) in enumerate(chapters, start=1):
            pdf.cell(0, 6, f"{number} {title} " + ". " * 30 + f" {number * 2}", new_x="LMARGIN", new_y="NEXT")
    for number, (title, sections) in enumerate(chapters, start=1):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 12, f"{number} {title}", new_x="LMARGIN", new_y="NEXT")
        for heading, paragraphs in sections:
            pdf.set_font("Helvetica", "B", 13)
            pdf.cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=10)
            if columns > 1:
                with pdf.text_columns(ncols=columns, gutter=4, text_align="J", balance=True) as body:
                    for text in paragraphs:
                        body.write(text=text)
                        body.ln()
                        body.ln()
                continue
            for text in paragraphs:
                if "~" in text:  # a word broken at the line's end, as TeX does: the line spaced out to the margin
                    first, rest = text.split("~", 1)
                    line = first + "-"
                    spare = pdf.epw - pdf.get_string_width(line)
                    pdf.set_char_spacing(max(0.0, spare / max(1, len(line) - 1)) * pdf.k)
                    pdf.cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
                    pdf.set_char_spacing(0)
                    pdf.multi_cell(0, 5, rest, new_x="LMARGIN", new_y="NEXT", align="J")
                else:
                    pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT", align="J")
                pdf.ln(3)
    if index:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 12, "Index", new_x="LMARGIN", new_y="NEXT")
        entries = sorted(heading for _, sections in chapters for heading, _ in sections)
        for initial in sorted({entry[0].upper() for entry in entries}):
            pdf.set_font("Helvetica", "B", 10)
            pdf.cell(0, 6, initial, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
            pdf.set_font("Helvetica", size=10)
            for entry in (e for e in entries if e[0].upper() == initial):
                pdf.cell(0, 5, f"{entry} " + ". " * 20 + " 2, 3", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    pdf.output(str(path))
    return path


def write_docx(path: Path, paragraphs: list[str], title: str = "", heading: str = "",
               table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    if heading:
        document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(str(path))
    return path


def write_pptx(path: Path, slides: list[tuple[str, str]], notes: list[str] | None = None) -> Path:
    import pptx

    deck = pptx.Presentation()
    layout = deck.slide_layouts[1]
    for i, (heading, body) in enumerate(slides):
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = heading
        slide.placeholders[1].text = body
        if notes and i < len(notes) and notes[i]:
            slide.notes_slide.notes_text_frame.text = notes[i]
    deck.save(str(path))
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]], title: str = "") -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    if title:
        book.properties.title = title
    book.save(str(path))
    return path


def write_eml(path: Path, sender: str, to: str, subject: str, body: str, date: str = "Mon, 02 Nov 2026 09:15:00 +0000",
              attachment: tuple[str, bytes] | None = None) -> Path:
    message = email.message.EmailMessage(policy=email.policy.default)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = date
    message.set_content(body)
    if attachment:
        message.add_attachment(attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0])
    path.write_bytes(message.as_bytes())
    return path


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value, indent=2))
    return path


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


# -- hostile files -----------------------------------------------------------------------------------
# a long page whose every paragraph matches HANGAR_QUESTION, and a short page that matches it less
HANGAR_QUESTION = "When do the zeppelin crews gather at the hangar?"


def write_hangar_pages(folder: Path) -> Path:
    """hangar.txt (five paragraphs about the hangar, a chunk each at 24 tokens) and gate.txt (one line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hangar.txt").write_text("\n\n".join(
        f"The zeppelin hangar {what} at dawn, and the zeppelin crews of the hangar gather there."
        for what in ("opens", "closes", "is swept", "is heated", "is inspected")) + "\n")
    (folder / "gate.txt").write_text("A guard keeps the gate of the airfield by night.\n")
    return folder


def write_zip_bomb_docx(path: Path, expanded_mb: int = 1024) -> Path:
    """A .docx whose document part expands to `expanded_mb` MiB of zeros (a few MiB on disk)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(expanded_mb):
                member.write(block)
    return path


def write_entity_bomb_xlsx(path: Path) -> Path:
    """An .xlsx whose workbook part declares nested entities ("billion laughs") and an external one."""
    write_xlsx(path, {"S": [["a", "b"]]})
    good = path.read_bytes()
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [' + entities + '<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">&lol9;&xxe;</workbook>')
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, bomb.encode() if item.filename == "xl/workbook.xml" else src.read(item.filename))
    return path


# -- scans: text rendered to pixels, as a scanner or a phone camera would give it ---------------------
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"


def text_image(lines: list[str], dpi: int = 200, skew: float = 0.0, noise: float = 0.0,
               width_in: float = 8.27, height_in: float = 11.69) -> "Image.Image":
    """A page of `lines` in 11 pt type as a greyscale image at `dpi`; `skew` degrees of rotation and
    `noise` (standard deviation of grey levels) as a photographed or faxed page has."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", (int(width_in * dpi), int(height_in * dpi)), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, int(11 / 72 * dpi))
    margin, step = int(0.8 * dpi), int(11 / 72 * dpi * 1.5)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * step), line, fill=0, font=font)
    if skew:
        page = page.rotate(skew, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    if noise:
        pixels = np.asarray(page, dtype=np.float32) + np.random.default_rng(0).normal(0, noise, page.size[::-1])
        page = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return page


def photo_of_text(lines: list[str], size: int = 34, angle: float = 3.0, blur: float = 0.8, noise: int = 25,
                  quality: int = 70) -> bytes:
    """A phone photo of a printed note, as JPEG bytes: `lines` in DejaVu Sans at `size` px on a 1600 x 700
    white page, rotated by `angle` degrees, blurred, with +-`noise` grey noise, saved at `quality`."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    page = Image.new("L", (1600, 700), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", size)
    for i, line in enumerate(lines):
        draw.text((120, 250 + i * 2 * size), line, font=font, fill=0)
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255).filter(ImageFilter.GaussianBlur(blur))
    grey = np.asarray(page).astype(np.int16) + np.random.default_rng(1).integers(-noise, noise + 1, (700, 1600))
    out = io.BytesIO()
    Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_scanned_pdf(path: Path, pages: list[tuple[str, list[str]]], dpi: int = 200) -> Path:
    """A PDF whose pages are ("scan", lines): an image of the text and no text layer, or ("text", lines):
    ordinary text, so a list of both kinds makes a mixed PDF."""
    from fpdf import FPDF

    pdf = FPDF()
    for kind, lines in pages:
        pdf.add_page()
        if kind == "scan":
            pdf.image(text_image(lines, dpi), x=0, y=0, w=pdf.w, h=pdf.h)
        else:
            pdf.set_font("Helvetica", size=11)
            pdf.multi_cell(0, 6, "\n".join(lines))
    pdf.output(str(path))
    return path


def write_tiff(path: Path, pages: list[list[str]], dpi: int = 200) -> Path:
    """A multi-page TIFF (a fax or a scanner's batch), one frame per page."""
    frames = [text_image(lines, dpi) for lines in pages]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_deflate", dpi=(dpi, dpi))
    return path


def write_bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header declares width x height pixels (10 gigapixels by default) over a few bytes of
    highly compressed data: decoding it would need gigabytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\x00" * (width + 1) * 64, 9)  # the first rows; the rest would expand likewise
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def write_slow_scan_pdf(path: Path, strokes: int = 3_000_000) -> Path:
    """A PDF page that looks scanned (a full-page image, no text) and draws millions of vector strokes over
    it, so rendering it for OCR takes far longer than any parse time limit: a hostile PDF's stall."""
    import zlib

    block = b"".join(b"%d %d m %d %d l S\n" % (i % 500, i % 700, i % 500 + 3, i % 700 + 2) for i in range(1000))
    ops = block * (strokes // 1000)
    content = b"q 595 0 0 842 0 0 cm /Im0 Do Q\n" + ops
    stream = zlib.compress(content, 9)
    image = zlib.compress(b"\xff" * 64 * 64, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /XObject << /Im0 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width 64 /Height 64 /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Length %d /Filter /FlateDecode >>\nstream\n" % len(image) + image + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def write_tex_symbols_pdf(path: Path) -> Path:
    """A page as pdfTeX writes a LaTeX package manual's argument without a ToUnicode map for its math
    symbol font: "bindingoffset=<length>" with the brackets set in CMSY10, whose codes for them are "h" and
    "i" (fpdf2's Courier, renamed; a core font carries no ToUnicode map), beside the letters h and i of
    the text font."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.set_xy(20, 30)
    for font, text in (("Helvetica", "bindingoffset="), ("Courier", "h"), ("Helvetica", "length"), ("Courier", "i"),
                       ("Helvetica", " adds a length to the inner margin, which helps with a binding.")):
        pdf.set_font(font, size=11)
        pdf.cell(pdf.get_string_width(text), 6, text)
    data = bytes(pdf.output())
    assert data.count(b"/BaseFont /Courier") == 1
    path.write_bytes(data.replace(b"/BaseFont /Courier", b"/BaseFont /CMSY10 "))  # same length: offsets hold
    return path
