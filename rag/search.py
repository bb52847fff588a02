"""Retrieval over a published index: dense (FAISS), keyword (BM25: tantivy or SQLite FTS5) or both fused."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from rag.embedding import Embedder, make_embedder
from rag.index import ACL_STAMP, FaissVectorIndex, IndexReader, IndexView, check_model, recorded_model_id
from rag.settings import SearchSettings, Settings
from rag.store import StoreReader
from rag.types import Hit, Principal, SearchResult
from rag.text import WORD

log = logging.getLogger(__name__)

SearchMode = Literal["dense", "keyword", "hybrid"]

_KEYWORD_THREADS: ThreadPoolExecutor | None = None
_KEYWORD_THREADS_LOCK = threading.Lock()


def _forget_keyword_threads() -> None:
    """A forked child has none of its parent's threads: it makes its own at its first hybrid search."""
    global _KEYWORD_THREADS, _KEYWORD_THREADS_LOCK
    _KEYWORD_THREADS, _KEYWORD_THREADS_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_keyword_threads)

# Words that carry no topic: dropped from keyword queries so an OR over the rest stays selective.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
""".split())


def keyword_terms(text: str) -> list[str]:
    """The query's content words, lower-cased, in order, once each."""
    words = [w for w in WORD.findall(text.lower()) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    return list(dict.fromkeys(words))


def keyword_match(store: "StoreReader", terms: list[str]) -> str | None:
    """An FTS5 MATCH expression: each word in its forms for the index's languages (`StoreReader.word_match`:
    quoted, no FTS5 syntax gets through), joined by OR."""
    return " OR ".join(store.word_match(w) for w in terms) or None


def question_language(store: "StoreReader", text: str) -> str:
    """The question's language among the index's: English for an English index (no detection), UNKNOWN when
    the detection is not sure."""
    languages = store.keyword_languages()
    if not languages or languages == ["en"]:
        return "en"
    from rag.analysis import analyzer

    return analyzer().question_language(text, languages)


def question_words(store: "StoreReader", text: str) -> list[str]:
    """The question's content words for the keyword index: `keyword_terms`, less the stop words of the
    question's own language among the index's ("wie", "comment" in a German or French question)."""
    terms = keyword_terms(text)
    language = question_language(store, text)
    if language == "en":  # keyword_terms left them out
        return terms
    from rag.analysis import analyzer

    return [t for t in terms if not analyzer().is_stop_word(t, language)] or terms


def convex_fusion(dense: list[tuple[int, float]], keyword: list[tuple[int, float]], alpha: float,
                  pool: int) -> list[tuple[int, float]]:
    """alpha * dense + (1 - alpha) * keyword, each side divided by its best score for the query.

    Unlike rank fusion this keeps each side's confidence: a rare name that BM25 matches strongly, or a
    paraphrase only the embedding sees, can win on its own. A candidate missing from one side scores
    that side's lowest normalised score when the side was cut at `pool` results (it ranked below
    them), and 0 when the side returned fewer (it did not match at all: no keyword in common).
    """
    def normalised(rows: list[tuple[int, float]]) -> tuple[dict[int, float], float]:
        top = max((score for _, score in rows), default=0.0)
        scores = {i: (score / top if top > 0 else 0.0) for i, score in rows}
        floor = min(scores.values()) if len(rows) >= pool else 0.0
        return scores, floor

    (d, d_floor), (kw, k_floor) = normalised(dense), normalised(keyword)
    fused = {i: alpha * d.get(i, d_floor) + (1 - alpha) * kw.get(i, k_floor) for i in d.keys() | kw.keys()}
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def reciprocal_rank_fusion(rankings: list[list[int]], weights: list[float], k: float) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score(id) = sum of weight / (k + rank), rank from 1; best first."""
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


Ranked = list[tuple[int, float]]  # (chunk id, score), best first


class Fusion(Protocol):
    """Merges one query's dense and keyword candidates (each best first, cut at `pool`) into one ranking."""

    def fuse(self, dense: Ranked, keyword: Ranked, pool: int) -> Ranked: ...


@dataclass(frozen=True)
class ConvexFusion:
    """The default: score-level fusion (`convex_fusion`), weight `alpha` on the dense side."""

    alpha: float

    def fuse(self, dense: Ranked, keyword: Ranked, pool: int) -> Ranked:
        return convex_fusion(dense, keyword, self.alpha, pool)


@dataclass(frozen=True)
class RankFusion:
    """Reciprocal rank fusion, kept for comparison (bench/ab_ingest_search.py)."""

    alpha: float
    k: float

    def fuse(self, dense: Ranked, keyword: Ranked, pool: int) -> Ranked:
        return reciprocal_rank_fusion([[i for i, _ in dense], [i for i, _ in keyword]], [self.alpha, 1 - self.alpha],
                                      self.k)


def make_fusion(settings: SearchSettings) -> Fusion:
    """The fusion `settings.fusion` names."""
    if settings.fusion == "rrf":
        return RankFusion(settings.hybrid_alpha, settings.rrf_k)
    return ConvexFusion(settings.hybrid_alpha)


@dataclass
class Readable:
    """The chunks one set of groups may read, at one version and permission stamp."""

    ids: np.ndarray
    exact: FaissVectorIndex | None = None  # their vectors alone, when the main index is approximate
    _selector: object = None

    def selector(self) -> object:
        """FAISS's id selector for them, built once (for 100,000 ids it costs about 25 ms, which every query paid)."""
        if self._selector is None:
            self._selector = FaissVectorIndex.selector(self.ids)
        return self._selector


class DenseRetriever:
    """Nearest chunks by embedding: FAISS over the whole index, over what a principal may read (an id
    selector), or exactly over a small readable set; a compressed (IVF-PQ) index's candidates re-scored
    from the stored vectors."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings

    def retrieve(self, view: IndexView, vectors: np.ndarray, pool: int, readable: "Readable | None") -> list[Ranked]:
        compressed = view.manifest.index_type == "ivfpq" and (readable is None or readable.exact is None)
        # a compressed index's order is approximate: take more candidates, re-score them exactly
        fetch = max(pool, self.pq_candidates(view)) if compressed else pool
        if readable is None:
            scores, ids = view.vectors.search(vectors, fetch)
        elif readable.exact is not None:
            scores, ids = readable.exact.search(vectors, pool)
        else:
            scores, ids = view.vectors.search(vectors, fetch, readable.ids, readable.selector())
        rows = [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                for row_ids, row_scores in zip(ids, scores)]
        if compressed:
            rows = [self.rescore(view, vector, row)[:pool] for vector, row in zip(vectors, rows)]
        return rows

    def pq_candidates(self, view: IndexView) -> int:
        """Candidates to re-score: PQ ranks worse as the index grows, so more of them (bench/compressed_index.py)."""
        return self.settings.pq_rescore or min(2000, max(200, view.manifest.vectors // 10_000))

    @staticmethod
    def rescore(view: IndexView, query: np.ndarray, row: Ranked) -> Ranked:
        """Exact cosines for a compressed index's candidates, from the stored embeddings, best first:
        PQ finds the candidates in a few bytes per vector; the order and the scores come from the real vectors."""
        if not row:
            return row
        ids = [i for i, _ in row]
        exact = view.store.embeddings(ids, view.manifest.dim) @ query
        return sorted(zip(ids, (float(x) for x in exact)), key=lambda item: -item[1])


class KeywordRetriever(Protocol):
    """BM25 over the analysed chunk text, title and heading path: each query's best `pool` chunks visible at
    the view's version, only among `readable` (its chunk ids; None: everything) when given, best first."""

    def retrieve(self, view: IndexView, queries: list[str], pool: int, readable: "Readable | None",
                 groups: list[str] | None) -> list[Ranked]: ...


class Fts5Retriever:
    """BM25 by SQLite FTS5 over the chunk store's keyword table, restricted in SQL to what a principal may
    read. Above `keyword_prune_above` chunks, its most common words are left out (`match`)."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings

    def retrieve(self, view: IndexView, queries: list[str], pool: int, readable: "Readable | None",
                 groups: list[str] | None) -> list[Ranked]:
        rows: list[Ranked] = []
        for query in queries:
            match = self.match(query, view, readable, groups)
            rows.append(view.store.keyword_search(match, pool, view.manifest.version, groups) if match else [])
        return rows

    def match(self, query: str, view: IndexView, readable: "Readable | None" = None,
              groups: list[str] | None = None) -> str | None:
        """The FTS5 query, without the words so common in this index that they cost more than they rank.

        A word in more than `keyword_max_df` of the chunks is dropped while at least three rarer words
        remain (it would add thousands of postings to score for little BM25 weight). For a restricted
        reader the counts are over what they may read: which words are kept must not tell them anything
        about documents they cannot see.
        """
        terms = question_words(view.store, query)
        total = view.manifest.vectors if readable is None else len(readable.ids)
        if len(terms) <= 3 or total <= self.settings.keyword_prune_above:
            return keyword_match(view.store, terms)
        limit = self.settings.keyword_max_df * total
        counts = view.store.term_counts(terms, view.manifest.version, groups)
        ranked = sorted(terms, key=lambda t: counts[t])
        kept = ranked[:3] + [t for t in ranked[3:] if counts[t] <= limit]
        return keyword_match(view.store, [t for t in terms if t in kept])


class TantivyRetriever:
    """BM25 by tantivy (rag.keywords) where its copy covers the view's version, exact (no word left out);
    FTS5 for a version it does not cover (being built, behind, absent), and for an index an earlier release
    wrote that no run has migrated yet."""

    def __init__(self, settings: SearchSettings, index_dir: Path) -> None:
        from rag.keywords import KeywordReader

        self.fts5 = Fts5Retriever(settings)
        self.copy = KeywordReader(index_dir)

    def retrieve(self, view: IndexView, queries: list[str], pool: int, readable: "Readable | None",
                 groups: list[str] | None) -> list[Ranked]:
        from rag.keywords import allowed_query, query_for

        opened = self.copy.searcher(view.store, view.manifest.version)
        if opened is None or view.store.keyword_table() != "chunk_terms":
            return self.fts5.retrieve(view, queries, pool, readable, groups)
        searcher, schema = opened
        allowed = None
        if readable is not None:
            if not len(readable.ids) or not groups:
                return [[] for _ in queries]
            allowed = allowed_query(schema, groups)
        rows: list[Ranked] = []
        for text in queries:
            query = query_for(schema, [view.store.word_forms(w) for w in question_words(view.store, text)], allowed)
            rows.append(self._visible_top(view, searcher, query, pool, readable) if query is not None else [])
        return rows

    @staticmethod
    def _visible_top(view: IndexView, searcher: object, query: object, k: int, readable: "Readable | None") -> Ranked:
        """The best `k` rows visible at the view's version (and readable: `readable`'s ids, which are this
        version's). The copy holds every stored row (unpublished and retired ones too, as FTS5's table does)
        and the readers of its last catch-up: the top rows are checked, the fetch widening while too few pass."""
        from rag.keywords import top

        fetch = 2 * k
        while True:
            rows = top(searcher, query, fetch)
            if readable is not None:
                kept = [(i, s) for i, s in rows if _contains(readable.ids, i)]
            else:
                visible = view.store.visible_ids([i for i, _ in rows], view.manifest.version)
                kept = [(i, s) for i, s in rows if i in visible]
            if len(kept) >= k or len(rows) < fetch or fetch >= 1 << 20:
                return kept[:k]
            fetch *= 4


def make_keyword_retriever(settings: SearchSettings, index_dir: Path) -> KeywordRetriever:
    """The configured keyword engine (RAG_KEYWORD_ENGINE); tantivy without its package installed is FTS5."""
    from rag.keywords import available

    if settings.keyword_engine == "tantivy" and available():
        return TantivyRetriever(settings, index_dir)
    return Fts5Retriever(settings)


class Searcher:
    """Batch-first search; `search` wraps `search_batch`. Picks up newly published versions.

    With a `principal` that is not an admin, both searches run only over the chunks of documents the
    principal's groups may read, inside the search (a FAISS id selector, an SQL restriction on the
    BM25 query), never by dropping results after the top k.
    """

    CACHED_GROUP_SETS = 8

    def __init__(self, embedder: Embedder, reader: IndexReader, settings: SearchSettings,
                 follow: Callable[[str], Embedder] | None = None) -> None:
        self.embedder = embedder
        self.reader = reader
        # with RAG_EMBEDDING_BACKEND=auto: the embedder for an index that now records other vectors (an
        # ingest run switched it), so a long-running page keeps answering instead of refusing every query
        self._follow = follow
        self._follow_lock = threading.Lock()
        self.settings = settings
        self.dense = DenseRetriever(self.settings)
        self.keyword = make_keyword_retriever(self.settings, reader.dir)
        self.fusion = make_fusion(self.settings)
        self._readable: OrderedDict[tuple, Readable] = OrderedDict()
        self._readable_lock = threading.Lock()

    def warm_up(self, mode: SearchMode | None = None) -> None:
        """Load the index, and the embedding model when `mode` (default: the configured one) needs it, now,
        so the first query is not the slow one. Keyword search never loads the model. The keyword analysis of
        the index's languages loads too (language detection, German and Dutch compound tables)."""
        view = self.current()
        from rag.analysis import analyzer

        analyzer().warm_up(view.store.keyword_languages())
        warm = getattr(self.embedder, "warm_up", None)
        if warm is not None and (mode or self.settings.mode) != "keyword":
            warm()

    def current(self) -> IndexView:
        """The newest published version (checked by a stat), refusing one built with another model."""
        return self._current()[0]

    def _current(self) -> tuple[IndexView, Embedder]:
        """The newest version and the embedder for its vectors, as one pair (another thread may switch
        the embedder between two reads of the attribute)."""
        self.reader.refresh()
        assert self.reader.view is not None
        view = self.reader.view
        recorded = view.manifest.embedding_model
        if self._follow is not None and recorded != self.embedder.model_id:
            with self._follow_lock:
                if recorded != self.embedder.model_id:
                    candidate = self._follow(recorded)
                    if candidate.model_id == recorded:
                        self.embedder = candidate
        embedder = self.embedder
        check_model(view.manifest, self.reader.dir, embedder.model_id)
        return view, embedder

    def readable(self, view: IndexView, principal: Principal | None) -> Readable | None:
        """What `principal` may read (None: everything), cached per version, permission stamp and groups."""
        if principal is None or principal.admin:
            return None
        groups = tuple(sorted(principal.groups))
        key = (view.manifest.version, view.store.get_meta(ACL_STAMP) or "", groups)
        with self._readable_lock:
            cached = self._readable.get(key)
            if cached is not None:
                self._readable.move_to_end(key)
                return cached
        ids = view.store.allowed_chunk_ids(view.manifest.version, groups)
        entry = Readable(ids)
        if view.manifest.index_type != "flat" and 0 < len(ids) <= self.settings.exact_max_vectors:
            # an IVF search probes the lists nearest the query; a few readable chunks may sit in none of
            # them, so a small readable set is searched exactly, from the stored vectors
            entry.exact = FaissVectorIndex.empty(view.manifest.dim, "flat", self.reader.settings)
            entry.exact.add(view.store.embeddings(ids.tolist(), view.manifest.dim), ids)
        with self._readable_lock:
            self._readable[key] = entry
            while len(self._readable) > self.CACHED_GROUP_SETS:
                self._readable.popitem(last=False)
        return entry

    def search_batch(self, queries: list[str], k: int = 5, mode: SearchMode | None = None,
                     principal: Principal | None = None, distinct: bool | None = None) -> list[SearchResult]:
        """The top `k` chunks for each query, best first.

        dense: cosine similarity of embeddings; keyword: BM25 over text and title; hybrid (default):
        both candidate lists fused (`settings.fusion`). Hits carry the fused score in `score` and the
        dense cosine in `dense_score` when the dense side saw them. `distinct` (default: the setting
        of that name): each page's best chunk comes before any page's second (the function `distinct_pages`).
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        mode = mode or self.settings.mode
        distinct = self.settings.distinct_pages if distinct is None else distinct
        view, embedder = self._current()
        readable = self.readable(view, principal)
        groups = sorted(principal.groups) if readable is not None and principal is not None else None
        n = max(1, len(queries))
        pool = max(k, self.settings.candidates) if mode == "hybrid" or distinct else k
        timings = {"embed": 0.0, "dense": 0.0, "keyword": 0.0}
        dense: list[Ranked] = [[] for _ in queries]
        keyword: list[Ranked] = [[] for _ in queries]
        t0 = time.perf_counter()
        beside = None
        if mode == "hybrid":
            # the keyword side runs beside the question's embedding and FAISS: tantivy, SQLite, ONNX Runtime
            # and FAISS let go of the GIL, and ONNX Runtime embeds a few questions on one thread, so on two
            # cores the sides overlap (docs/benchmarks.md: at 1M chunks, p50 2-5 ms lower)
            beside = self._beside().submit(self._keyword, view, queries, pool, readable, groups)
        if mode in ("dense", "hybrid"):
            vectors = embedder.embed_queries(queries)
            t1 = time.perf_counter()
            dense = self.dense.retrieve(view, vectors, pool, readable)
            timings["embed"], timings["dense"] = t1 - t0, time.perf_counter() - t1
        if beside is not None:
            keyword, timings["keyword"] = beside.result()
        elif mode == "keyword":
            keyword, timings["keyword"] = self._keyword(view, queries, pool, readable, groups)
        t3 = time.perf_counter()
        results = []
        for query, dense_row, keyword_row in zip(queries, dense, keyword):
            ranked = self.fusion.fuse(dense_row, keyword_row, pool) if mode == "hybrid" else dense_row or keyword_row
            ranked = ranked[:k + min(3 * k, DISTINCT_MORE) if distinct else k]
            if readable is not None:  # both searches were restricted; this only guards against a bug there
                unreadable = [i for i, _ in ranked if not _contains(readable.ids, i)]
                if unreadable:
                    log.error("search returned chunks %s the principal may not read: dropped", unreadable)
                    ranked = [(i, s) for i, s in ranked if i not in unreadable]
            cosine = dict(dense_row)
            hits = [replace(h, dense_score=cosine.get(h.chunk_id))
                    for h in view.store.fetch_hits([i for i, _ in ranked], [s for _, s in ranked])]
            hits = distinct_pages(hits)[:k] if distinct else hits
            results.append(SearchResult(query=query, hits=hits, version=view.manifest.version))
        timings["fuse_fetch"] = time.perf_counter() - t3
        timings["total"] = time.perf_counter() - t0
        timings["search"] = timings["total"] - timings["embed"]  # everything but the query embedding
        per_query = {name: round(value * 1000 / n, 3) for name, value in timings.items()}
        for result in results:
            result.timings_ms = dict(per_query)
        return results

    def _keyword(self, view: IndexView, queries: list[str], pool: int, readable: Readable | None,
                 groups: list[str] | None) -> tuple[list[Ranked], float]:
        """The keyword side's rows, and the seconds it took."""
        started = time.perf_counter()
        return self.keyword.retrieve(view, queries, pool, readable, groups), time.perf_counter() - started

    @staticmethod
    def _beside() -> ThreadPoolExecutor:
        """The process's threads for the keyword sides of hybrid searches (the standard library's default
        number: the cores plus four, at most 32), made at the first hybrid search."""
        global _KEYWORD_THREADS
        with _KEYWORD_THREADS_LOCK:
            if _KEYWORD_THREADS is None:
                _KEYWORD_THREADS = ThreadPoolExecutor(thread_name_prefix="rag-keyword")
            return _KEYWORD_THREADS

    def term_statistics(self, terms: list[str], ids: list[int],
                        principal: Principal | None = None) -> tuple[int, dict[str, tuple[int, bool]]]:
        """(chunks in scope, {word: (chunks in scope containing it, whether one of `ids` does)}), the scope
        being what `principal` may read: statistics never reflect documents the asker cannot read."""
        view = self.current()
        readable = self.readable(view, principal)
        if readable is None:
            return view.manifest.vectors, view.store.term_presence(terms, ids, view.manifest.version)
        groups = sorted(principal.groups) if principal is not None else []
        return len(readable.ids), view.store.term_presence(terms, ids, view.manifest.version, groups)

    def question_words(self, text: str) -> list[str]:
        """The question's content words as the keyword search takes them (`question_words`): without the stop
        words of its own language, which the index does not hold ("meine", "wo" in a German question)."""
        return question_words(self.current().store, text)

    def question_language(self, text: str) -> str:
        """The question's language among the index's (`question_language`)."""
        return question_language(self.current().store, text)

    def unknown_words(self, terms: list[str], principal: Principal | None = None) -> set[str]:
        """The words no chunk `principal` may read holds, in any form: neither the word (stemmed as the
        keyword index stems) nor, for words of seven letters or more, any word sharing its first five."""
        view = self.current()
        readable = self.readable(view, principal)
        groups = None if readable is None else (sorted(principal.groups) if principal is not None else [])
        version = view.manifest.version
        absent = [t for t, n in view.store.term_counts(terms, version, groups).items() if n == 0]
        long = [t for t in absent if len(t) >= 7]
        found = {t for t, n in view.store.term_counts([t[:5] for t in long], version, groups, prefix=True).items() if n}
        return {t for t in absent if t not in long or t[:5] not in found}

    def search(self, query: str, k: int = 5, mode: SearchMode | None = None,
               principal: Principal | None = None, distinct: bool | None = None) -> SearchResult:
        """Search one query."""
        return self.search_batch([query], k, mode, principal, distinct)[0]


DISTINCT_MORE = 50  # distinct pages are looked for among the best 4 k chunks, at most k + this many


def distinct_pages(hits: Sequence[Hit]) -> list[Hit]:
    """The hits with each page's best first, in their order, then the others in theirs: a page (a file
    without pages) that holds several of the best chunks would otherwise fill the top k with them, and
    leave out the page that answers (Elasticsearch's field collapsing, by path and page). A page among the
    best k by score is among the best k this way too, at the same rank or higher, so no page is lost."""
    seen: set[tuple[str, int | None]] = set()
    first, later = [], []
    for hit in hits:
        place = (hit.path, hit.page)
        (later if place in seen else first).append(hit)
        seen.add(place)
    return first + later


def _contains(sorted_ids: np.ndarray, chunk_id: int) -> bool:
    at = int(np.searchsorted(sorted_ids, chunk_id))
    return at < len(sorted_ids) and int(sorted_ids[at]) == chunk_id


def build_searcher(settings: Settings) -> Searcher:
    """A searcher over the configured index with the configured embedding model (lazy-loaded)."""
    embedding = settings.embedding
    follow = None if embedding.backend != "auto" else (lambda recorded: make_embedder(embedding, recorded))
    embedder = make_embedder(embedding, recorded_model_id(settings.index))
    return Searcher(embedder, IndexReader(settings.index), settings.search, follow)
