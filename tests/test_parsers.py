"""Every format from files the tests write, and the hostile inputs each parser must refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.parsers import Limits, ParseError, ParseOptions, decode_text, parser_for
from tests import docgen

OPTIONS = ParseOptions(Limits(zip_max_uncompressed=64 * 2**20))


def parse(path: Path):  # type: ignore[no-untyped-def]
    return parser_for(path.suffix.lower())(path.read_bytes(), str(path), OPTIONS)


def test_pdf_pages_and_title(tmp_path: Path) -> None:
    doc = parse(docgen.write_pdf(tmp_path / "a.pdf", ["The kiln fires at noon.", "Zebra crossings on page two."],
                                 title="Kiln Manual"))
    assert doc.title == "Kiln Manual"
    assert [(u.page, u.text) for u in doc.units] == [(1, "The kiln fires at noon."), (2, "Zebra crossings on page two.")]


def test_docx_paragraphs_tables_title(tmp_path: Path) -> None:
    doc = parse(docgen.write_docx(tmp_path / "a.docx", ["Badges open door 7."], heading="Access",
                                  table=[["Room", "Floor"], ["Lab", "3"]]))
    assert doc.title == "Access"
    text = doc.units[0].text
    assert "Badges open door 7." in text and "Room: Lab · Floor: 3" in text


def test_pptx_one_unit_per_slide_with_notes(tmp_path: Path) -> None:
    doc = parse(docgen.write_pptx(tmp_path / "a.pptx", [("Intro", "Hello"), ("Lunch", "At noon")],
                                  notes=["", "Bring a badge"]))
    assert [u.page for u in doc.units] == [1, 2]
    assert "At noon" in doc.units[1].text and "Notes: Bring a badge" in doc.units[1].text
    assert doc.title == "Intro"


def test_xlsx_rows_keep_their_headers(tmp_path: Path) -> None:
    doc = parse(docgen.write_xlsx(tmp_path / "a.xlsx", {"Prices": [["Item", "EUR"], ["Widget", 12]]}))
    assert doc.units[0].heading == ("Sheet: Prices",) and "Item: Widget · EUR: 12" in doc.units[0].text


def test_csv_json_eml(tmp_path: Path) -> None:
    csv_doc = parse(docgen.write_csv(tmp_path / "a.csv", [["City", "Office"], ["Oslo", "North"]]))
    assert "City: Oslo · Office: North" in csv_doc.units[0].text
    json_doc = parse(docgen.write_json(tmp_path / "a.json", {"title": "Owners", "svc": [{"name": "api", "owner": "Ann"}]}))
    assert json_doc.title == "Owners" and "svc[0].owner: Ann" in json_doc.units[0].text
    mail = parse(docgen.write_eml(tmp_path / "a.eml", "a@x.example", "b@x.example", "Fire drill",
                                  "The drill is on Friday.", attachment=("plan.bin", b"\0\1")))
    assert mail.title == "Fire drill"
    assert "The drill is on Friday." in mail.units[0].text and "Attachments: plan.bin" in mail.units[0].text


def test_html_main_text_without_scripts_styles_navigation(tmp_path: Path) -> None:
    path = tmp_path / "a.html"
    path.write_text("<html><head><title>T</title><style>.x{color:red}</style><script>steal()</script></head>"
                    "<body><nav>Home About</nav><header>Banner</header><main><p>Real content here.</p></main>"
                    "<footer>Copyright</footer></body></html>")
    doc = parse(path)
    assert doc.title == "T"
    assert doc.units[0].text == "Real content here."


def test_markdown_and_rst_titles(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("intro\n# Deploy Guide\ntext")
    (tmp_path / "a.rst").write_text("Deploy Guide\n============\n\ntext")
    assert parse(tmp_path / "a.md").title == "Deploy Guide"
    assert parse(tmp_path / "a.rst").title == "Deploy Guide"


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16", "shift_jis"])
def test_legacy_encodings_are_decoded(encoding: str) -> None:
    text = "Grüße aus Köln: Kündigungsfrist drei Monate." if encoding != "shift_jis" else "東京オフィスの会議室は三階です。" * 3
    assert decode_text(text.encode(encoding)).strip() == text


def test_binary_with_text_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ParseError, match="binary"):
        parse(path)


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="encrypted"):
        parse(docgen.write_pdf(tmp_path / "a.pdf", ["secret"], password="pw"))


def test_corrupt_and_truncated_files_are_refused(tmp_path: Path) -> None:
    pdf = docgen.write_pdf(tmp_path / "a.pdf", ["hello"])
    (tmp_path / "b.pdf").write_bytes(pdf.read_bytes()[:200])
    docx = docgen.write_docx(tmp_path / "a.docx", ["hello"])
    (tmp_path / "b.docx").write_bytes(docx.read_bytes()[:1000])
    (tmp_path / "c.xlsx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    for name, pattern in [("b.pdf", "corrupt"), ("b.docx", "corrupt or truncated"), ("c.xlsx", "encrypted")]:
        with pytest.raises(ParseError, match=pattern):
            parse(tmp_path / name)


def test_zip_bomb_is_refused_without_expanding(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="zip bomb"):
        parse(docgen.write_zip_bomb_docx(tmp_path / "bomb.docx", expanded_mb=128))


def test_entity_bomb_and_external_entity_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="DTD or entities"):
        parse(docgen.write_entity_bomb_xlsx(tmp_path / "bomb.xlsx"))


def test_invalid_json_and_non_mail(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "a.eml").write_text("")
    with pytest.raises(ParseError, match="invalid JSON"):
        parse(tmp_path / "a.json")
    with pytest.raises(ParseError, match="not an e-mail"):
        parse(tmp_path / "a.eml")
