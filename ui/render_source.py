"""Renders one page of an indexed document for the source viewer, in a sandboxed child process.

The document is untrusted (anyone who can write to a share chooses its bytes), so a page is never
rendered in the web server: `ui.sources` starts this module with the file's bytes on stdin and a time
limit, and reads back one JSON line and a PNG. The child leaves the network, may read only its code
(Landlock), and runs under address-space, CPU and process limits; a PDF that stalls pdfium is killed at
the time limit, a decompression bomb is refused before its pixels are decoded.

Every page is drawn within `max_pixels` (a page declaring 600 x 60,000 pt is drawn smaller, never as a
121-megapixel image), and the passage's highlight is drawn here too, so no image of the document is ever
decoded in the server's process.

Protocol: stdin is a JSON line {"kind": "pdf"|"image", "page": N, "max_width": W, "max_pixels": P,
"passage": text to highlight or "", "words": OCR word boxes [[x0, y0, x1, y1, word], ...] or null}
followed by the file's bytes. stdout is a JSON line {"pages", "width", "height", "highlighted"} or
{"error"}, then the PNG.
"""

from __future__ import annotations

import json
import sys


def pdf_scale(width_pt: float, height_pt: float, max_width: int, max_pixels: int) -> float:
    """pdfium's scale for a page: at most `max_width` pixels wide (and at most twice its size), and within
    `max_pixels` however tall the page declares itself."""
    scale = min(2.0, max_width / max(1.0, width_pt))
    area = max(1.0, width_pt * height_pt)
    return min(scale, (0.98 * max_pixels / area) ** 0.5)  # (pdfium rounds each side up)


def _pdf(data: bytes, page_number: int, max_width: int, max_pixels: int, passage: str,
         words: list | None) -> tuple[dict, bytes]:
    import pypdfium2 as pdfium

    from ui.sources import highlight_boxes, highlight_image

    pdf = pdfium.PdfDocument(data)
    pages = len(pdf)
    if not 1 <= page_number <= pages:
        return {"error": f"page {page_number} of {pages}"}, b""
    page = pdf[page_number - 1]
    width_pt, height_pt = page.get_size()
    image = page.render(scale=pdf_scale(width_pt, height_pt, max_width, max_pixels)).to_pil()
    boxes: list[tuple[float, float, float, float]] = []
    if passage and words is None:
        textpage = page.get_textpage()
        count = textpage.count_chars()
        text = textpage.get_text_range(0, count) if count else ""
        chars = []
        for i in range(count):
            left, bottom, right, top = textpage.get_charbox(i, loose=True)
            chars.append((left / width_pt, 1 - top / height_pt, right / width_pt, 1 - bottom / height_pt))
        boxes = highlight_boxes(passage, text, chars, None)
    elif passage:
        boxes = highlight_boxes(passage, "", [], words)
    png = highlight_image(image, boxes)
    return {"pages": pages, "width": image.width, "height": image.height, "highlighted": bool(boxes)}, png


def _image(data: bytes, frame: int, max_width: int, max_pixels: int, passage: str,
           words: list | None) -> tuple[dict, bytes]:
    from ingest.parsers import image_frame, open_image
    from ui.sources import highlight_boxes, highlight_image

    image = open_image(data)
    pages = getattr(image, "n_frames", 1)
    if not 1 <= frame <= pages:
        return {"error": f"page {frame} of {pages}"}, b""
    shown = image_frame(image, frame - 1, max_pixels)  # the parser's checks: size before decoding
    shown.thumbnail((max_width, max_width * 4))
    boxes = highlight_boxes(passage, "", [], words) if passage and words else []
    png = highlight_image(shown, boxes)
    return {"pages": pages, "width": shown.width, "height": shown.height, "highlighted": bool(boxes)}, png


def main() -> None:
    from ingest.sandbox import confine, limit_resources

    request = json.loads(sys.stdin.buffer.readline())
    data = sys.stdin.buffer.read()
    confine(sys.prefix)
    limit_resources(int(request.get("memory_bytes", 1 << 30)), int(request.get("cpu_seconds", 20)))
    try:
        args = (data, int(request["page"]), int(request["max_width"]), int(request["max_pixels"]),
                str(request.get("passage") or ""), request.get("words"))
        header, png = _pdf(*args) if request["kind"] == "pdf" else _image(*args)
    except Exception as exc:  # a malformed file: said in one line, the viewer shows the text instead
        header, png = {"error": f"{type(exc).__name__}: {exc}"[:300]}, b""
    sys.stdout.buffer.write(json.dumps(header).encode() + b"\n" + png)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
