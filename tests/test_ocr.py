"""Scans and images read by OCR inside the sandboxed parser workers, with files the tests generate:
a scanned PDF, a mixed PDF, a skewed noisy photo, a multi-page TIFF, a decompression bomb and a PDF
whose rendering stalls. Tesseract (tesserocr) and Debian's English language file must be installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.job import run_ingest
from ingest.ocr import OcrChoice, OcrEngine, choose_ocr, find_tessdata, make_ocr
from ingest.parsers import OcrOptions, ParseError, ParseOptions, needs_ocr, parse_image, parse_pdf, render_scale
from rag.embedding import SentenceTransformerEmbedder
from rag.index import IndexReader
from rag.search import Searcher
from rag.settings import ConfigError, OcrSettings
from tests import docgen
from tests.docgen import (text_image, write_bomb_png, write_scanned_pdf, write_slow_scan_pdf, write_tiff)



@pytest.fixture(autouse=True)
def tesseract_installed() -> None:
    """CI fails without Tesseract's language file; elsewhere these tests skip."""
    if find_tessdata(None) is None:
        if os.environ.get("RAG_CI"):
            pytest.fail("Tesseract's language files not found: apt-get install tesseract-ocr-eng")
        pytest.skip("Tesseract's language files not found (apt-get install tesseract-ocr-eng)")

KILN = ["Pottery studio rules, page two.", "The kiln is fired on Thursdays after 18:00 and",
        "only the studio manager, Mira Okafor, may load it."]
BOILER = ["Facilities notice.", "The boiler room key is kept at reception desk B,",
          "and contractors sign it out with their badge number."]
INVOICE = ["Invoice 2026-0412 from Lindqvist Catering.", "The total due is 4,380.50 EUR,",
           "payable within 30 days of the delivery date."]
FAX = [["Fax cover sheet.", "To the legal department, from the Oslo office."],
       ["Second page of the fax.", "The signed lease for the Bergen warehouse starts on 1 March 2027."]]


def engine(name: str = "tesseract") -> OcrEngine:
    choice = choose_ocr(OcrSettings(engine=name))  # type: ignore[arg-type]
    made = make_ocr(choice, page_timeout_s=30)
    assert made is not None
    return made


def options(ocr: OcrEngine | None, **kwargs: object) -> ParseOptions:
    return ParseOptions(ocr=OcrOptions(ocr, **kwargs))  # type: ignore[arg-type]


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", ["tesseract", "rapidocr"])
def test_every_engine_reads_a_page_with_word_boxes(name: str) -> None:
    """The OcrEngine contract: text, a confidence in 0..1, boxes inside the page around the words."""
    if name == "rapidocr":
        pytest.importorskip("rapidocr_onnxruntime")
    reader = engine(name)
    page = reader.read([text_image(INVOICE, 200)])[0]
    assert not page.error and "4,380.50" in page.text and "Lindqvist" in page.text
    assert 0.5 < page.confidence <= 1
    assert all(0 <= x <= 1 for w in page.words for x in w.box)
    total = next(w for w in page.words if "4,380.50" in w.text)
    assert total.box[0] < total.box[2] and total.box[1] < total.box[3] < 0.3  # near the top of the page
    from PIL import Image

    blank = reader.read([Image.new("L", (1200, 1600), 255)])[0]  # nothing to read is not an error
    assert blank.text.strip() == "" and not blank.error and blank.words == ()


def test_choice_follows_settings_and_says_what_is_missing(tmp_path: Path) -> None:
    assert choose_ocr(OcrSettings(engine="none")).engine == "none"
    choice = choose_ocr(OcrSettings())
    assert choice.engine == "tesseract" and "eng" in choice.available_languages
    for engine_name in ("tesseract", "auto"):  # a missing language is an error, not a silent fallback
        with pytest.raises(ConfigError, match="no language file for klingon.*tesseract-ocr-klingon"):
            choose_ocr(OcrSettings(engine=engine_name, languages="eng+klingon"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="RAG_OCR_TESSDATA_DIR"):
        choose_ocr(OcrSettings(engine="tesseract", tessdata_dir=tmp_path))


def test_scanned_and_mixed_pdfs_are_read_page_by_page(tmp_path: Path) -> None:
    reader = engine()
    scanned = write_scanned_pdf(tmp_path / "scan.pdf", [("scan", BOILER), ("scan", KILN)]).read_bytes()
    parsed = parse_pdf(scanned, "scan.pdf", options(reader))
    assert [u.page for u in parsed.units] == [1, 2]
    assert all(u.ocr is not None and u.ocr.confidence > 0.8 for u in parsed.units)
    assert "Mira Okafor" in words(parsed.units[1].text)
    mixed = write_scanned_pdf(tmp_path / "mixed.pdf", [("text", INVOICE), ("scan", KILN)]).read_bytes()
    units = parse_pdf(mixed, "mixed.pdf", options(reader)).units
    assert units[0].ocr is None and "4,380.50" in units[0].text  # the text layer, not OCR
    assert units[1].ocr is not None and "Thursdays after 18:00" in words(units[1].text)
    # OCR off: the text pages are kept and the scanned one is reported, not silently empty
    units = parse_pdf(mixed, "mixed.pdf", options(None, off_reason="OCR is off (RAG_OCR_ENGINE=none)")).units
    assert "4,380.50" in units[0].text and units[1].text == ""
    assert units[1].warning == "page 2: scanned, not read (OCR is off (RAG_OCR_ENGINE=none))"


def test_scan_detection_and_render_bounds() -> None:
    assert needs_ocr(chars=0, coverage=1.0) and needs_ocr(chars=120, coverage=0.9)
    assert not needs_ocr(chars=2500, coverage=1.0)  # a searchable scan keeps its text layer
    assert not needs_ocr(chars=0, coverage=0.0)  # a blank page
    assert not needs_ocr(chars=400, coverage=0.2)  # text with a logo
    assert render_scale(595, 842, 200, 80_000_000) == pytest.approx(200 / 72)
    huge = render_scale(200 * 72, 200 * 72, 200, 80_000_000)  # a 200 x 200 inch page
    assert (200 * 72 * huge) ** 2 <= 80_000_000


def test_skewed_noisy_photo_and_multipage_tiff(tmp_path: Path) -> None:
    reader = engine()
    photo = tmp_path / "whiteboard.jpg"
    text_image(INVOICE, 200, skew=3.0, noise=25).convert("RGB").save(photo, quality=40)
    parsed = parse_image(photo.read_bytes(), str(photo), options(reader))
    assert "4,380.50 EUR" in words(parsed.units[0].text) and parsed.title == "whiteboard"
    faded = tmp_path / "photocopy.png"  # grey text on a grey page: found by the deskewing, read by Tesseract
    text_image(INVOICE, 200, skew=1.5).point(lambda v: 150 + v * 85 // 255).save(faded)
    assert "4,380.50 EUR" in words(parse_image(faded.read_bytes(), str(faded), options(reader)).units[0].text)
    tiff = write_tiff(tmp_path / "fax.tif", FAX)
    units = parse_image(tiff.read_bytes(), str(tiff), options(reader)).units
    assert [u.page for u in units] == [1, 2] and "Bergen warehouse" in words(units[1].text)


@pytest.mark.parametrize("name", ["tesseract", "rapidocr"])
def test_a_photo_of_a_note_keeps_the_spaces_between_its_words(name: str) -> None:
    """A blurred, noisy, rotated phone photo: RapidOCR's recogniser reads each line as one run of letters
    ("Thesparekey for theserverroom"); the spaces it dropped are put back from the gaps the page shows."""
    if name == "rapidocr":
        pytest.importorskip("rapidocr_onnxruntime")
    lines = ["The spare key for the server room is kept at reception.",
             "Ask the facilities team before you borrow it overnight."]
    photo = docgen.photo_of_text(lines)
    parsed = parse_image(photo, "note.jpg", options(engine(name)))
    assert words(parsed.units[0].text) == " ".join(lines)
    assert [w.text for w in parsed.units[0].ocr.words][:4] == ["The", "spare", "key", "for"]  # word boxes


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = write_bomb_png(tmp_path / "bomb.png")
    started = time.perf_counter()
    with pytest.raises(ParseError, match="refused"):
        parse_image(bomb.read_bytes(), "bomb.png", options(engine()))
    # under PIL's own bomb limit, our limit still refuses before any pixel is decoded
    big = write_bomb_png(tmp_path / "big.png", 12_000, 12_000)
    with pytest.raises(ParseError, match="12000 x 12000 pixels is over the 80-megapixel limit"):
        parse_image(big.read_bytes(), "big.png", options(engine()))
    assert time.perf_counter() - started < 5
    with pytest.raises(ParseError, match="image not read: OCR is off"):
        parse_image(bomb.read_bytes(), "bomb.png", options(None, off_reason="OCR is off"))


def test_a_page_over_its_time_limit_is_reported_and_the_rest_kept(tmp_path: Path) -> None:
    slow = make_ocr(OcrChoice("tesseract", "eng", str(find_tessdata(None))), page_timeout_s=0.001)
    assert slow is not None
    pdf = write_scanned_pdf(tmp_path / "mixed.pdf", [("text", INVOICE), ("scan", KILN)]).read_bytes()
    units = parse_pdf(pdf, "mixed.pdf", options(slow)).units
    assert "4,380.50" in units[0].text
    assert units[1].ocr is None and units[1].warning.startswith("page 2: OCR stopped after")


@pytest.mark.slow
def test_ingest_reads_scans_in_the_sandbox_and_cites_their_pages(make_settings, embedder: SentenceTransformerEmbedder,
                                                                 tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_scanned_pdf(docs / "facilities-scan.pdf", [("scan", BOILER), ("scan", KILN)])
    write_scanned_pdf(docs / "invoice-mixed.pdf", [("text", ["Cover letter for the catering invoice."]), ("scan", INVOICE)])
    write_tiff(docs / "fax.tiff", FAX)
    text_image(BOILER[:1] + ["Whiteboard: the fire drill is on 14 May at 10:30 in the north stairwell."],
               skew=2.5, noise=20).convert("RGB").save(docs / "whiteboard.jpg", quality=50)
    write_bomb_png(docs / "bomb.png")
    write_slow_scan_pdf(docs / "stall.pdf")
    (docs / "notes.txt").write_text("The parking garage closes at 22:00 on weekdays.\n")
    settings = make_settings(parse_timeout_s=2.0, parse_workers=2)
    summary = run_ingest(settings, [docs], embedder=embedder, progress=False)
    failed = {Path(f.path).name: f.error for f in summary.files_failed}
    assert set(failed) == {"bomb.png", "stall.pdf"}, failed
    assert "refused" in failed["bomb.png"] and "longer than 2 s" in failed["stall.pdf"]
    assert summary.files_indexed == 5 and summary.pages_ocr == 6
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    expect = {"Who may load the kiln?": ("facilities-scan.pdf", 2),
              "What is the total due on the Lindqvist catering invoice?": ("invoice-mixed.pdf", 2),
              "When does the Bergen warehouse lease start?": ("fax.tiff", 2),
              "When is the fire drill?": ("whiteboard.jpg", 1)}
    for result in searcher.search_batch(list(expect), k=1):
        hit = result.hits[0]
        assert (Path(hit.path).name, hit.page) == expect[result.query], result
        assert hit.metadata()["ocr"] is True and 0.5 < float(hit.metadata()["ocr_confidence"]) <= 1  # type: ignore[arg-type]
    plain = searcher.search("When does the parking garage close?", k=1).hits[0]
    assert "ocr" not in plain.metadata()
    # `rag ask` answers from the scans and cites the right page of the right file
    questions = tmp_path / "questions.txt"
    questions.write_text("Who may load the kiln?\nWhen does the Bergen warehouse lease start?\n")
    asked = subprocess.run([sys.executable, "-m", "ui.cli", "ask", "--queries", str(questions), "--index",
                            str(settings.index_dir), "--json"], capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, RAG_DEVICE="cpu", RAG_MODEL_CACHE_DIR=str(settings.model_cache_dir)))
    assert asked.returncode == 0, asked.stderr
    answers = [json.loads(line) for line in asked.stdout.splitlines() if line.startswith("{")]
    for answer, (name, page) in zip(answers, [("facilities-scan.pdf", 2), ("fax.tiff", 2)]):
        assert not answer["abstained"], answer
        top = answer["sources"][0]
        assert (Path(top["path"]).name, top["page"]) == (name, page), answer
    assert "Okafor" in answers[0]["answer"] and "1 March 2027" in answers[1]["answer"]
    # a second run reads nothing again: unchanged files are skipped by content hash
    again = run_ingest(settings, [docs], embedder=embedder, progress=False)
    assert again.pages_ocr == 0 and again.files_unchanged == 5
    reader = IndexReader(settings.index)
    reader.refresh()
    assert reader.view is not None and reader.view.status()["ocr_pages"] == 6
    stored = json.loads(json.dumps(reader.view.store.ocr_pages(hit.doc_id)[0].words))
    assert any(w[4] == "drill" for w in stored)


@pytest.mark.slow
def test_files_beside_a_long_scan_are_searchable_before_it_is_read(make_settings, embedder: SentenceTransformerEmbedder,
                                                                   tmp_path: Path) -> None:
    """With two workers, one reads a long scan page by page while the other takes the small files; those are
    committed and published while the scan is still being read, not held in a batch behind it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    full_page = [*KILN, *BOILER, *INVOICE] * 3  # about a second of OCR per page: the scan takes 10 s or more
    write_scanned_pdf(docs / "long-scan.pdf", [("scan", [f"Page {n} of the archive.", *full_page]) for n in range(10)])
    (docs / "notes.txt").write_text("The parking garage closes at 22:00 on weekdays.\n")
    settings = make_settings(parse_workers=2, publish_interval_s=60)
    done: list[int] = []
    summary = run_ingest(settings, [docs], embedder=embedder, progress=False,
                         on_progress=lambda p: done.append(p.files_done) if p.phase == "indexing" else None)
    assert summary.pages_ocr == 10 and summary.files_indexed == 2
    assert 1 in done and summary.versions_published >= 1  # the note went out on its own, published mid-run
