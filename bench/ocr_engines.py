"""OCR engines on generated scans: character error rate and seconds per page, per engine, DPI and defect.

Pages of known text (real passages from ../shared/eval, DejaVu Serif 11 pt, A4) are rendered at
150/200/300 DPI, clean and with the defects of real scans: a 2.5° skew, sensor noise, heavy JPEG
artefacts, a faded copy (grey on grey), a fax (100 DPI, one bit per pixel), two columns, and a ruled table. Each engine reads every page; CER is the Levenshtein distance
between its text and the truth (whitespace collapsed) over the truth's length; word recall, the share of
the truth's words read in any order, separates recognition from reading order. Engines, as ingest runs
them (ingest/ocr.py): Tesseract 5.5 in process (tesserocr, with our deskewing) and RapidOCR
(rapidocr-onnxruntime: PP-OCRv4 ONNX models inside its wheel); and Debian's `tesseract` 5.3 program through
pytesseract where that is installed (the first measurement, before tesserocr):

    apt-get install tesseract-ocr-eng          # tesseract-ocr too for the pytesseract row
    .venv/bin/pip install rapidfuzz            # pytesseract==0.3.13 for that row
    .venv/bin/python bench/ocr_engines.py [--pages 2] [--dpi 150,200,300]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_vs_langchain import shared_passages  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
A4_IN = (8.27, 11.69)
DEFECTS = ("clean", "skew", "noise", "jpeg", "faded", "fax", "two-columns", "table")


def render(lines: list[str], dpi: int, columns: list[list[str]] | None = None) -> Image.Image:
    width, height = int(A4_IN[0] * dpi), int(A4_IN[1] * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, int(11 / 72 * dpi))
    margin, step = int(0.8 * dpi), int(11 / 72 * dpi * 1.45)
    if columns is None:
        columns = [lines]
    column_width = (width - 2 * margin) // len(columns)
    for c, column in enumerate(columns):
        for i, line in enumerate(column):
            draw.text((margin + c * column_width, margin + i * step), line, fill=0, font=font)
    return page


def table_page(rng: random.Random, words: list[str], dpi: int) -> tuple[Image.Image, str]:
    width, height = int(A4_IN[0] * dpi), int(A4_IN[1] * dpi)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, int(11 / 72 * dpi))
    margin, row_h, cols = int(0.8 * dpi), int(0.35 * dpi), 4
    col_w = (width - 2 * margin) // cols
    truth = []
    for r in range(20):
        cells = [" ".join(rng.sample(words, 2)) if c else f"{rng.randint(100, 9999)}.{rng.randint(10, 99)}"
                 for c in range(cols)]
        truth.append(" ".join(cells))
        y = margin + r * row_h
        for c, cell in enumerate(cells):
            draw.rectangle([margin + c * col_w, y, margin + (c + 1) * col_w, y + row_h], outline=0, width=2)
            draw.text((margin + c * col_w + 8, y + row_h // 5), cell, fill=0, font=font)
    return page, " ".join(truth)


def make_pages(count: int, dpi: int, seed: int = 3) -> list[tuple[str, Image.Image, str]]:
    rng = random.Random(seed)
    passages = [p for p in shared_passages(700) if len(p) > 600 and p.isascii()]
    words = sorted({w.strip(".,;:'\"()") for p in passages[:200] for w in p.split() if w.isalpha() and len(w) > 3})
    out = []
    for n in range(count):
        text = " ".join(rng.sample(passages, 3))
        lines = textwrap.wrap(text, 80)
        for defect in DEFECTS:
            if defect == "table":
                page, truth = table_page(rng, words, dpi)
            elif defect == "two-columns":
                narrow = textwrap.wrap(text, 38)
                half = (len(narrow) + 1) // 2
                page, truth = render([], dpi, [narrow[:half], narrow[half:]]), " ".join(narrow)
            else:
                page, truth = render(lines, dpi), " ".join(lines)
            if defect == "skew":
                page = page.rotate(2.5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
            elif defect == "noise":
                pixels = np.asarray(page, dtype=np.float32)
                pixels += np.random.default_rng(n).normal(0, 30, pixels.shape)
                page = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
            elif defect == "faded":  # a photocopy of a photocopy: grey text on a grey page
                page = page.point(lambda v: 150 + v * 85 // 255)
            elif defect == "fax":  # 100 x 100 DPI, one bit per pixel, shown at the page's resolution
                size = page.size
                small = page.resize((size[0] * 100 // dpi, size[1] * 100 // dpi), Image.Resampling.BILINEAR)
                page = small.point(lambda v: 255 if v > 160 else 0).resize(size, Image.Resampling.NEAREST)
            elif defect == "jpeg":
                buffer = io.BytesIO()
                page.save(buffer, "JPEG", quality=15)
                page = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
            out.append((defect, page, truth))
    return out


def cer(text: str, truth: str) -> float:
    from rapidfuzz.distance import Levenshtein

    norm = lambda s: " ".join(s.split())  # noqa: E731
    return Levenshtein.distance(norm(text), norm(truth)) / max(1, len(norm(truth)))


def word_recall(text: str, truth: str) -> float:
    """Share of the truth's words the engine read, in any order: recognition apart from reading order
    (a table read column by column, or two columns interleaved, has a high CER but may miss nothing)."""
    from collections import Counter

    got, want = Counter(text.split()), Counter(truth.split())
    return sum((got & want).values()) / max(1, sum(want.values()))


def engines() -> dict[str, Callable[[Image.Image], str]]:
    """The product's two engines as ingest runs them (ingest/ocr.py: Tesseract in process with deskewing,
    RapidOCR), plus the `tesseract` program through pytesseract where installed (the first measurement)."""
    from ingest.ocr import choose_ocr, make_ocr
    from rag.settings import OcrSettings

    out: dict[str, Callable[[Image.Image], str]] = {}
    for name in ("tesseract", "rapidocr"):
        try:
            engine = make_ocr(choose_ocr(OcrSettings(engine=name)), page_timeout_s=120)  # type: ignore[arg-type]
        except Exception as exc:  # not installed here: measured where it is
            print(json.dumps({"engine": name, "skipped": str(exc)}), flush=True)
            continue
        assert engine is not None
        out[engine.name] = lambda page, engine=engine: engine.read([page])[0].text  # type: ignore[misc]
    try:
        import pytesseract

        out[f"tesseract {pytesseract.get_tesseract_version()} (pytesseract, the program)"] = \
            lambda page: pytesseract.image_to_string(page, lang="eng")
    except (ImportError, OSError):
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--dpi", default="150,200,300")
    args = parser.parse_args()
    readers = engines()
    rows = []
    for dpi in [int(d) for d in args.dpi.split(",")]:
        pages = make_pages(args.pages, dpi)
        for name, read in readers.items():
            read(pages[0][1])  # warm-up: model load
            for defect in DEFECTS:
                errors, seconds, recalls = [], [], []
                for kind, page, truth in pages:
                    if kind != defect:
                        continue
                    started = time.perf_counter()
                    text = read(page)
                    seconds.append(time.perf_counter() - started)
                    errors.append(cer(text, truth))
                    recalls.append(word_recall(text, truth))
                row = {"engine": name, "dpi": dpi, "defect": defect, "cer": round(statistics.mean(errors), 4),
                       "word_recall": round(statistics.mean(recalls), 4),
                       "s_per_page": round(statistics.mean(seconds), 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    for name in readers:
        mine = [r for r in rows if r["engine"] == name]
        print(json.dumps({"engine": name, "mean_cer": round(statistics.mean(r["cer"] for r in mine), 4),
                          "mean_s_per_page": round(statistics.mean(r["s_per_page"] for r in mine), 2)}))


if __name__ == "__main__":
    main()
