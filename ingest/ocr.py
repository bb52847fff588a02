"""OCR for scanned PDF pages and images, run inside the sandboxed parser workers.

Two engines behind one `OcrEngine` Protocol, picked by `make_ocr` from the settings:
- Tesseract through `tesserocr`, which calls libtesseract in process (the parser sandbox forbids new
  processes, so `pytesseract`, which runs the `tesseract` program, cannot work there). The wheel bundles
  the library; the language files come from the system (Debian's `tesseract-ocr-eng`, ...).
- RapidOCR (`rapidocr-onnxruntime`), whose detection and recognition models ship inside its wheel.

The default is Tesseract, chosen by measurement (docs/benchmarks.md, "OCR engines on generated scans"):
it reads prose with every defect tested and ruled tables; RapidOCR runs words together on noisy pages.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rag.settings import ConfigError, OcrSettings

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Where distributions put Tesseract's language files (Debian 12/13, older releases, source builds).
TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                 "/usr/share/tessdata", "/usr/local/share/tessdata")


@dataclass(frozen=True)
class OcrWord:
    """A word (Tesseract) or a line (RapidOCR) read from a page, with its box as fractions of the page's
    width and height (x0, y0, x1, y1), so a viewer can highlight it at any resolution."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float  # 0..1


@dataclass(frozen=True)
class OcrPage:
    """What the engine read from one page image; `error` set (and nothing read) when it could not."""

    text: str
    confidence: float  # mean word confidence, 0..1
    words: tuple[OcrWord, ...] = ()
    seconds: float = 0.0
    error: str = ""


class OcrEngine(Protocol):
    """Reads page images. `name` ("tesseract 5.5.4") is stored with every OCR'd page."""

    name: str

    def read(self, images: Sequence["Image.Image"]) -> list[OcrPage]: ...


@dataclass(frozen=True)
class OcrChoice:
    """The engine an ingest run uses, decided once in the parent (the workers get it as is)."""

    engine: str  # "tesseract", "rapidocr" or "none"
    languages: str = "eng"
    tessdata_dir: str = ""
    reason: str = ""  # why OCR is off, for the files that needed it
    available_languages: tuple[str, ...] = ()


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def find_tessdata(configured: Path | None) -> Path | None:
    """The folder holding Tesseract's language files: the configured one, TESSDATA_PREFIX, or the usual places."""
    candidates = [str(configured)] if configured else [os.environ.get("TESSDATA_PREFIX", ""), *TESSDATA_DIRS]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and any(Path(candidate).glob("*.traineddata")):
            return Path(candidate)
    return None


def tesseract_languages(tessdata: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name.removesuffix(".traineddata") for p in tessdata.glob("*.traineddata")
                        if p.name != "osd.traineddata"))


def choose_ocr(settings: OcrSettings) -> OcrChoice:
    """Which engine reads scans on this machine, or why none does. A choice that cannot work as configured
    (a named engine not installed, a language without its file) raises ConfigError; `auto` falls back to
    RapidOCR, then to none, only when Tesseract is not installed at all."""
    if settings.engine == "none":
        return OcrChoice("none", reason="OCR is off (RAG_OCR_ENGINE=none)")
    wanted = [lang for lang in settings.languages.split("+") if lang]
    if settings.engine in ("auto", "tesseract"):
        tessdata = find_tessdata(settings.tessdata_dir)
        problem = ""
        if not _has("tesserocr"):
            problem = "tesserocr is not installed (pip install tesserocr)"
        elif tessdata is None:
            problem = ("no Tesseract language files found (apt install tesseract-ocr-eng, or set "
                       "RAG_OCR_TESSDATA_DIR)")
        else:
            have = tesseract_languages(tessdata)
            missing = [lang for lang in wanted if lang not in have]
            if missing:  # no fallback: RapidOCR's models read Chinese and English only
                raise ConfigError(f"Tesseract has no language file for {', '.join(missing)} in {tessdata}: apt "
                                  f"install tesseract-ocr-{missing[0]}, or change RAG_OCR_LANGUAGES (installed: "
                                  f"{', '.join(have)})")
            return OcrChoice("tesseract", "+".join(wanted), str(tessdata), available_languages=have)
        if settings.engine == "tesseract":
            raise ConfigError(f"OCR engine tesseract cannot run: {problem}")
        if _has("rapidocr_onnxruntime"):
            return OcrChoice("rapidocr", reason=f"Tesseract unavailable ({problem}); using RapidOCR")
        return OcrChoice("none", reason=f"no OCR engine: {problem}")
    if not _has("rapidocr_onnxruntime"):
        raise ConfigError("OCR engine rapidocr is not installed (pip install rapidocr-onnxruntime)")
    return OcrChoice("rapidocr")


def skew_angle(image: "Image.Image", limit: float = 8.0) -> float:
    """The rotation (degrees, counter-clockwise, as PIL's `rotate` takes it) that straightens the page's text
    lines: the one whose rows of ink are sharpest (largest variance of the row sums), searched coarse then fine on a small copy.
    Tesseract's layout analysis splits a skewed line of a sparse page into pieces read out of order."""
    import numpy as np
    from PIL import Image

    small = image.convert("L")
    small.thumbnail((900, 900))
    pixels = np.asarray(small)
    # ink is darker than halfway from the darkest pixel to the page (the median): a faded copy's grey text
    # counts, and a page with no contrast has no skew to find
    darkest, page = float(pixels.min()), float(np.median(pixels))
    if page - darkest < 30:
        return 0.0
    ink = Image.fromarray(((pixels < (darkest + page) / 2) * 255).astype(np.uint8))

    def sharpness(angle: float) -> float:
        rows = np.asarray(ink.rotate(float(angle), resample=Image.Resampling.NEAREST), dtype=np.float32).sum(axis=1)
        return float(np.var(rows))

    # candidates nearest to straight first: on a tie (no lines at all) the page is left as it is
    coarse = max(sorted(np.arange(-limit, limit + 0.01, 1.0), key=abs), key=sharpness)
    return float(max(sorted(np.arange(coarse - 1.0, coarse + 1.01, 0.2), key=lambda a: abs(a)), key=sharpness))


def _unrotate(box: tuple[float, float, float, float], angle: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A box found on the image rotated by `angle` about its centre, in the original image's fractions."""
    import math

    width, height = size
    cx, cy = width / 2, height / 2
    # PIL rotates counter-clockwise on screen (y down); the inverse turns by -angle
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    xs, ys = [], []
    for x, y in ((box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])):
        dx, dy = x * width - cx, y * height - cy
        xs.append((cx + dx * cos - dy * sin) / width)
        ys.append((cy + dx * sin + dy * cos) / height)
    return (max(0.0, min(xs)), max(0.0, min(ys)), min(1.0, max(xs)), min(1.0, max(ys)))


class TesseractOcr:
    """Tesseract in process; the API (and its language model) loads on first use and is reused."""

    def __init__(self, choice: OcrChoice, page_timeout_s: float) -> None:
        self.choice = choice
        self.page_timeout_ms = max(1, int(page_timeout_s * 1000))
        self._api: object | None = None
        import tesserocr

        self.name = f"tesseract {tesserocr.tesseract_version().split()[1]}"

    def _load(self) -> object:
        if self._api is None:
            from tesserocr import PSM, PyTessBaseAPI

            self._api = PyTessBaseAPI(path=self.choice.tessdata_dir, lang=self.choice.languages, psm=PSM.AUTO)
        return self._api

    def read(self, images: Sequence["Image.Image"]) -> list[OcrPage]:
        from PIL import Image
        from tesserocr import RIL, iterate_level

        api = self._load()
        pages = []
        for image in images:
            started = time.perf_counter()
            gray = image.convert("L")
            width, height = gray.size
            angle = skew_angle(gray)
            if abs(angle) >= 0.4:
                gray = gray.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=255)
            api.SetImage(gray)  # type: ignore[attr-defined]
            if not api.Recognize(timeout=self.page_timeout_ms):  # type: ignore[attr-defined]
                seconds = time.perf_counter() - started
                pages.append(OcrPage("", 0.0, seconds=seconds, error=(
                    f"OCR stopped after {seconds:.0f} s (page time limit {self.page_timeout_ms / 1000:g} s)")))
                continue
            words = []
            iterator = api.GetIterator()  # type: ignore[attr-defined]
            for word in iterate_level(iterator, RIL.WORD) if iterator is not None else ():
                try:
                    text = (word.GetUTF8Text(RIL.WORD) or "").strip()
                except RuntimeError:  # tesserocr raises for a word that recognised as nothing
                    continue
                box = word.BoundingBox(RIL.WORD)
                if text and box:
                    x0, y0, x1, y1 = box
                    fractions = (x0 / width, y0 / height, x1 / width, y1 / height)
                    if abs(angle) >= 0.4:
                        fractions = _unrotate(fractions, angle, (width, height))
                    words.append(OcrWord(text, fractions, word.Confidence(RIL.WORD) / 100))
            try:
                text = api.GetUTF8Text()  # type: ignore[attr-defined]
            except RuntimeError:  # a page with nothing on it
                text = ""
            confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
            pages.append(OcrPage(text, confidence, tuple(words), time.perf_counter() - started))
        return pages


class RapidOcr:
    """RapidOCR on ONNX Runtime. Its recogniser reads a text line at a time and, on noisy or blurred photos,
    drops the spaces between words ("Thesparekey for theserverroom"): the line is read with a box per
    character, and a space is put back wherever the gap between two characters is a word's gap
    (`words_from_characters`), which also gives word boxes instead of line boxes. No per-page time limit
    (the library has none): the file's limit holds."""

    def __init__(self) -> None:
        from importlib.metadata import version

        self.name = f"rapidocr-onnxruntime {version('rapidocr-onnxruntime')}"
        self._engine: object | None = None

    def read(self, images: Sequence["Image.Image"]) -> list[OcrPage]:
        import numpy as np

        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            self._engine = RapidOCR()
        pages = []
        for image in images:
            started = time.perf_counter()
            rgb = image.convert("RGB")
            width, height = rgb.size
            pixels = np.asarray(rgb)
            result, _ = self._engine(pixels, return_word_box=True)  # type: ignore[operator]
            ink = np.asarray(rgb.convert("L")) < 128
            lines, words = [], []
            for item in result or []:
                points, text, score = item[0], str(item[1]), float(item[2])
                boxes = item[3] if len(item) > 3 else None
                line_words = words_from_characters(text, boxes, ink) if boxes else []
                if not line_words:  # no character boxes: the line as one box
                    xs, ys = [p[0] for p in points], [p[1] for p in points]
                    line_words = [(text, (min(xs), min(ys), max(xs), max(ys)))]
                lines.append(" ".join(w for w, _ in line_words))
                words.extend(OcrWord(w, (x0 / width, y0 / height, x1 / width, y1 / height), score)
                             for w, (x0, y0, x1, y1) in line_words)
            confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
            pages.append(OcrPage("\n".join(lines), confidence, tuple(words), time.perf_counter() - started))
        return pages


_CLOSING = frozenset(".,;:!?)]}%'\"’”»")  # never the start of a word
_OPENING = frozenset("([{$€£'\"‘“«")  # never the end of one


def words_from_characters(text: str, boxes: Sequence[Sequence[Sequence[float]]], ink: "np.ndarray"
                          ) -> list[tuple[str, tuple[float, float, float, float]]]:
    """A recognised line's words with their boxes, from a box per character (spaces included, as RapidOCR
    gives them) and the page's ink (True where a pixel is dark): a word ends at a space the recogniser read,
    or where the page shows a space it dropped: between two characters' centres, a run of columns without
    ink wider than 45% of a character's median width, unless punctuation joins them ("4,380.50", "date.").
    [] when the boxes do not match the text."""
    if len(boxes) != len(text):
        return []
    spans = [(min(p[0] for p in box), min(p[1] for p in box), max(p[0] for p in box), max(p[1] for p in box))
             for box in boxes]
    widths = sorted(s[2] - s[0] for s, ch in zip(spans, text) if not ch.isspace())
    if not widths:
        return []
    gap_limit = 0.45 * widths[len(widths) // 2]

    def blank_run(left: tuple[float, ...], right: tuple[float, ...]) -> int:
        """The widest run of ink-free columns between two characters' centres, over their height."""
        x0, x1 = int((left[0] + left[2]) / 2), int((right[0] + right[2]) / 2)
        y0, y1 = int(min(left[1], right[1])), int(max(left[3], right[3])) + 1
        x0, x1 = max(0, x0), min(ink.shape[1], x1)
        y0, y1 = max(0, y0), min(ink.shape[0], y1)
        if x1 <= x0 or y1 <= y0:
            return 0
        empty = ~ink[y0:y1, x0:x1].any(axis=0)
        best = run = 0
        for blank in empty:
            run = run + 1 if blank else 0
            best = max(best, run)
        return best

    out: list[tuple[str, tuple[float, float, float, float]]] = []
    word, box = "", None
    previous: tuple[float, ...] | None = None
    for ch, span in zip(text, spans):
        joined = ch in _CLOSING or (word and word[-1] in _OPENING) or (word and word[-1] in ",." and ch.isdigit())
        if ch.isspace() or (word and previous is not None and not joined and blank_run(previous, span) > gap_limit):
            if word and box is not None:
                out.append((word, box))
            word, box = "", None
            if ch.isspace():
                previous = None
                continue
        word += ch
        box = span if box is None else (min(box[0], span[0]), min(box[1], span[1]), max(box[2], span[2]),
                                        max(box[3], span[3]))
        previous = span
    if word and box is not None:
        out.append((word, box))
    return out


def make_ocr(choice: OcrChoice, page_timeout_s: float) -> OcrEngine | None:
    """The engine `choice` names (None when OCR is off)."""
    if choice.engine == "tesseract":
        return TesseractOcr(choice, page_timeout_s)
    if choice.engine == "rapidocr":
        return RapidOcr()
    return None


def warm_up(engine: OcrEngine) -> None:
    """Load the engine's models now: the worker does this before its process limit, since the libraries may
    start threads on first use, which that limit forbids."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (200, 60), 255)
    ImageDraw.Draw(image).text((10, 20), "warm up", fill=0)
    engine.read([image])
