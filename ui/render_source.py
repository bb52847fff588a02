"""Renders one page of an indexed document for the source viewer, in a sandboxed child process.

The document is untrusted (anyone who can write to a share chooses its bytes), so a page is never
rendered in the web server: `ui.sources` starts this module with the file's bytes on stdin and a time
limit, and reads back one JSON line and a PNG. The child leaves the network, may read only its code
(Landlock), and runs under address-space, CPU and process limits; a PDF that stalls pdfium is killed at
the time limit, a decompression bomb is refused before its pixels are decoded.

Protocol: stdin is a JSON line {"kind": "pdf"|"image", "page": N, "max_width": W, "max_pixels": P}
followed by the file's bytes. stdout is a JSON line {"pages", "width", "height", "text", "boxes"} (for a
PDF page: its text and one box per character, as fractions of the page) or {"error"}, then the PNG.
"""

from __future__ import annotations

import io
import json
import sys


def _pdf(data: bytes, page_number: int, max_width: int) -> tuple[dict, bytes]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    pages = len(pdf)
    if not 1 <= page_number <= pages:
        return {"error": f"page {page_number} of {pages}"}, b""
    page = pdf[page_number - 1]
    width_pt, height_pt = page.get_size()
    scale = min(2.0, max_width / max(1.0, width_pt))
    image = page.render(scale=scale).to_pil()
    textpage = page.get_textpage()
    count = textpage.count_chars()
    text = textpage.get_text_range(0, count) if count else ""
    boxes = []
    for i in range(count):
        left, bottom, right, top = textpage.get_charbox(i, loose=True)
        boxes.append((round(left / width_pt, 5), round(1 - top / height_pt, 5), round(right / width_pt, 5),
                      round(1 - bottom / height_pt, 5)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return {"pages": pages, "width": image.width, "height": image.height, "text": text, "boxes": boxes}, \
        buffer.getvalue()


def _image(data: bytes, frame: int, max_width: int, max_pixels: int) -> tuple[dict, bytes]:
    from ingest.parsers import image_frame, open_image

    image = open_image(data)
    pages = getattr(image, "n_frames", 1)
    if not 1 <= frame <= pages:
        return {"error": f"page {frame} of {pages}"}, b""
    shown = image_frame(image, frame - 1, max_pixels)  # the parser's checks: size before decoding
    shown.thumbnail((max_width, max_width * 4))
    buffer = io.BytesIO()
    shown.convert("RGB").save(buffer, "PNG")
    return {"pages": pages, "width": shown.width, "height": shown.height, "text": "", "boxes": []}, \
        buffer.getvalue()


def main() -> None:
    from ingest.sandbox import confine, limit_resources

    request = json.loads(sys.stdin.buffer.readline())
    data = sys.stdin.buffer.read()
    confine(sys.prefix)
    limit_resources(int(request.get("memory_bytes", 1 << 30)), int(request.get("cpu_seconds", 20)))
    try:
        if request["kind"] == "pdf":
            header, png = _pdf(data, int(request["page"]), int(request["max_width"]))
        else:
            header, png = _image(data, int(request["page"]), int(request["max_width"]), int(request["max_pixels"]))
    except Exception as exc:  # a malformed file: said in one line, the viewer shows the text instead
        header, png = {"error": f"{type(exc).__name__}: {exc}"[:300]}, b""
    sys.stdout.buffer.write(json.dumps(header).encode() + b"\n" + png)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
