"""Token-aware chunking, measured with the embedding model's own tokenizer.

The splitter is LangChain's RecursiveCharacterTextSplitter (paragraphs, then lines, sentences,
words) with lengths counted in model tokens; every chunk is then checked against the model's
window and cut further when the splitter's merge overshot, so the model never truncates silently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


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
