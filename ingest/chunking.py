"""Token-aware chunking that follows sections, measured with the embedding model's own tokenizer.

A document arrives as sections (`TextUnit`s: a heading path, and per page for paged formats). Each section
is split on its own, so a heading starts a chunk; consecutive small sections (a man page's FILES, HOOKS
and SEE ALSO) share a chunk, each with its heading as a line, under the path they have in common. The
splitter is LangChain's RecursiveCharacterTextSplitter (paragraphs, then lines, sentences, words) with
lengths counted in model tokens; every chunk is then checked against the model's window and cut further
when the splitter's merge overshot, so the model never truncates silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.types import SECTION_SEPARATOR

if TYPE_CHECKING:
    from ingest.parsers import TextUnit


@dataclass(frozen=True)
class Piece:
    """A chunk's text, its page (None without pages) and its heading path ("Backups › Retention")."""

    text: str
    page: int | None
    section: str


def load_token_counter(model_folder: Path) -> tuple[Callable[[str], int], Callable[[str, int], list[str]]]:
    """(count tokens, cut text into pieces of at most n tokens) for the model in `model_folder`."""
    tokenizer_file = model_folder / "tokenizer.json"
    if tokenizer_file.is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_file))
        tok.no_truncation()
        tok.no_padding()

        def count(text: str) -> int:
            return len(tok.encode(text, add_special_tokens=False).ids)

        def cut(text: str, n: int) -> list[str]:
            offsets = tok.encode(text, add_special_tokens=False).offsets
            return [text[offsets[i][0]:offsets[min(i + n, len(offsets)) - 1][1]] for i in range(0, len(offsets), n)]

        return count, cut

    from transformers import AutoTokenizer  # slow path: folders with only vocab files

    hf = AutoTokenizer.from_pretrained(str(model_folder), local_files_only=True)

    def hf_count(text: str) -> int:
        return len(hf.encode(text, add_special_tokens=False))

    def hf_cut(text: str, n: int) -> list[str]:
        ids = hf.encode(text, add_special_tokens=False)
        return [hf.decode(ids[i:i + n]) for i in range(0, len(ids), n)]

    return hf_count, hf_cut


class Chunker:
    """Splits text into chunks of about `chunk_tokens` tokens, never more than `max_tokens`."""

    def __init__(self, model_folder: Path, chunk_tokens: int, overlap_tokens: int, max_tokens: int) -> None:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        if chunk_tokens > max_tokens:
            raise ValueError(
                f"chunk_tokens {chunk_tokens} exceeds what the embedding model reads ({max_tokens} tokens): "
                f"lower RAG_CHUNK_TOKENS"
            )
        self.count, self._cut = load_token_counter(model_folder)
        self.max_tokens = max_tokens
        self.chunk_tokens = chunk_tokens
        self.splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=overlap_tokens,
            length_function=self.count,
            separators=["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
            keep_separator="end",
        )

    def split(self, text: str) -> list[str]:
        """Chunks of `text`, each within the model's window."""
        chunks = []
        for piece in self.splitter.split_text(text):
            piece = piece.strip()
            if not piece:
                continue
            if self.count(piece) <= self.max_tokens:
                chunks.append(piece)
            else:
                chunks.extend(p.strip() for p in self._cut(piece, self.max_tokens) if p.strip())
        return chunks

    def split_units(self, units: "Sequence[TextUnit]") -> list[Piece]:
        """Chunks of a document's sections, in reading order: a section starts a chunk; runs of small
        sections on one page (under a third of a chunk each) are packed together up to a chunk's size."""
        small = max(16, self.chunk_tokens // 3)
        pieces: list[Piece] = []
        pending: list[tuple["TextUnit", int]] = []  # small sections waiting to be packed

        def pack() -> None:
            if not pending:
                return
            common = _common_prefix([u.heading for u, _ in pending])
            parts = []
            for unit, _ in pending:
                own = unit.heading[len(common):]
                parts.append("\n\n".join([*([SECTION_SEPARATOR.join(own)] if own and len(pending) > 1 else []),
                                            unit.text]))
            heading = common if len(pending) > 1 else pending[0][0].heading
            text = "\n\n".join(parts)
            pieces.extend(Piece(t, pending[0][0].page, SECTION_SEPARATOR.join(heading)) for t in self.split(text))
            pending.clear()

        for unit in units:
            if not unit.text.strip():
                continue
            tokens = self.count(unit.text)
            if tokens < small:
                if pending and (pending[0][0].page != unit.page or
                                sum(n for _, n in pending) + tokens > self.chunk_tokens):
                    pack()
                pending.append((unit, tokens))
                continue
            pack()
            section = SECTION_SEPARATOR.join(unit.heading)
            pieces.extend(Piece(t, unit.page, section) for t in self.split(unit.text))
        pack()
        return pieces


def _common_prefix(paths: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    first = paths[0]
    size = 0
    while size < len(first) and all(len(p) > size and p[size] == first[size] for p in paths):
        size += 1
    return first[:size]
