"""Writers for every supported format, used by the tests and by scripts/make_samples.py."""

from __future__ import annotations

import email.message
import email.policy
import io
import json
import zipfile
from pathlib import Path


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
