"""Dense search over a published index: embed the queries, search FAISS, fetch the chunks."""

from __future__ import annotations

import threading
import time

from rag.embedding import Embedder, make_embedder
from rag.index import IndexReader
from rag.settings import Settings
from rag.types import SearchResult


class Searcher:
    """Batch-first search; `search` wraps `search_batch`. Picks up newly published versions."""

    def __init__(self, embedder: Embedder, reader: IndexReader) -> None:
        self.embedder = embedder
        self.reader = reader
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the index and the embedding model now, so the first query is not the slow one."""
        self._refresh()
        warm = getattr(self.embedder, "warm_up", None)
        if warm is not None:
            warm()

    def _refresh(self) -> None:
        with self._lock:
            if self.reader.refresh():
                self.reader.check_model(self.embedder.model_id)

    def search_batch(self, queries: list[str], k: int = 5) -> list[SearchResult]:
        """The top `k` chunks for each query, most similar first (cosine similarity scores)."""
        if k < 1:
            raise ValueError("k must be at least 1")
        self._refresh()
        reader = self.reader
        assert reader.vectors is not None and reader.store is not None
        t0 = time.perf_counter()
        vectors = self.embedder.embed_batch(queries)
        t1 = time.perf_counter()
        scores, ids = reader.vectors.search(vectors, k)
        t2 = time.perf_counter()
        results = []
        for query, row_scores, row_ids in zip(queries, scores, ids):
            keep = row_ids >= 0
            hits = reader.store.fetch_hits(row_ids[keep].tolist(), row_scores[keep].tolist())
            results.append(SearchResult(query=query, hits=hits))
        t3 = time.perf_counter()
        n = max(1, len(queries))
        for result in results:
            result.timings_ms = {
                "embed": round((t1 - t0) * 1000 / n, 3),
                "search": round((t2 - t1) * 1000 / n, 3),
                "fetch": round((t3 - t2) * 1000 / n, 3),
                "total": round((t3 - t0) * 1000 / n, 3),
            }
        return results

    def search(self, query: str, k: int = 5) -> SearchResult:
        """Search one query."""
        return self.search_batch([query], k)[0]


def build_searcher(settings: Settings) -> Searcher:
    """A searcher over `settings.index_dir` with the configured embedding model (lazy-loaded)."""
    return Searcher(make_embedder(settings), IndexReader(settings))

