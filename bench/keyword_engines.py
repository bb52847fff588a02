"""Keyword engines side by side at scale (issue 28): SQLite FTS5 (today's), tantivy and bm25s over the same
analysed tokens, each checked against a brute-force BM25 over those tokens with that engine's own formula.

The chunks are the synthetic ones of bench/retrieval_latency.py (halves of real passages from ../shared/eval
recombined, so every chunk is distinct), analysed as the index analyses them (rag.analysis, English). The
questions are the real ones of both QA sets, analysed as a search analyses them. For each engine: build
time, size on disk (or in memory), p50/p95 of one OR query's top 10, and the share of queries whose top 10
is the brute-force top 10 (ties at the 10th score counted as equal). The reference uses each engine's
formula: FTS5's bm25() (idf = ln((N - n + 0.5) / (n + 0.5)), at least 1e-6) and Lucene's (tantivy, bm25s:
idf = ln(1 + (N - n + 0.5) / (n + 0.5))), k1 = 1.2, b = 0.75; tantivy stores a document's length in one
byte (its fieldnorm code), so its reference is computed both with exact lengths and
with lengths rounded as tantivy rounds them (Lucene's SmallFloat.intToByte4: exact below 24 tokens, then a
4-bit mantissa). Diacritics are folded before every engine (FTS5's tokenizer folds them; the others do not).

    .venv/bin/python bench/keyword_engines.py [--chunks 1000000] [--queries 300] [--engines fts5,tantivy,bm25s]

Prints a JSON line per engine, then one summary line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.ingest_vs_langchain import shared_passages
from rag.analysis import analyzer
from rag.search import keyword_terms

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
K1, B, K = 1.2, 0.75, 10


def fold(word: str) -> str:
    """`word` without diacritics, as FTS5's unicode61 tokenizer (remove_diacritics 2) indexes it."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def fieldnorm(length: int) -> int:
    """A length as tantivy (and Lucene) stores it in one byte and reads it back (SmallFloat.intToByte4)."""
    free = 24  # 255 - longToInt4(2**31 - 1)
    if length < free:
        return length
    value = length - free
    shift = value.bit_length() - 4
    if shift <= 0:
        return length
    return free + ((value >> shift) << shift)


def corpus(n: int) -> list[str]:
    """n distinct synthetic chunks, as bench/retrieval_latency.py makes them (same seed)."""
    texts_in = shared_passages(900)
    rng = np.random.default_rng(0)
    a_idx, b_idx = rng.integers(0, len(texts_in), n), rng.integers(0, len(texts_in), n)
    return [f"{texts_in[a][: len(texts_in[a]) // 2]} {texts_in[b][len(texts_in[b]) // 2:]}" for a, b in zip(a_idx, b_idx)]


def questions(limit: int) -> list[list[str]]:
    """The QA sets' questions as the keyword search analyses them (English stems), at most `limit`."""
    a = analyzer()
    out = []
    for name in ("boolq-dev", "narrativeqa-dev"):
        with open(SHARED / name / "queries.jsonl") as f:
            for line in f:
                words = keyword_terms(json.loads(line)["question"])
                terms = list(dict.fromkeys(fold(f) for w in words for f in a.word_forms(w, ["en"])))
                if terms:
                    out.append(terms)
    rng = np.random.default_rng(1)
    return [out[i] for i in rng.permutation(len(out))[:limit]]


class Reference:
    """Brute-force BM25 over postings held in numpy arrays (every posting of every query term scored)."""

    def __init__(self, docs: list[list[str]]) -> None:
        postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for doc_id, tokens in enumerate(docs):
            counts: dict[str, int] = defaultdict(int)
            for t in tokens:
                counts[t] += 1
            for t, c in counts.items():
                postings[t].append((doc_id, c))
        self.postings = {t: (np.array([d for d, _ in p], dtype=np.int64), np.array([c for _, c in p], dtype=np.float64))
                         for t, p in postings.items()}
        self.lengths = np.array([len(d) for d in docs], dtype=np.float64)
        self.n = len(docs)

    def scores(self, terms: list[str], idf_kind: str, lengths: np.ndarray | None = None) -> np.ndarray:
        """Every chunk's BM25 score for the query."""
        lengths = self.lengths if lengths is None else lengths
        avg = float(self.lengths.mean())  # the average of the true lengths (tantivy's too)
        scores = np.zeros(self.n)
        for t in terms:
            if t not in self.postings:
                continue
            ids, tf = self.postings[t]
            df = len(ids)
            if idf_kind == "fts5":
                idf = max(math.log((self.n - df + 0.5) / (df + 0.5)), 1e-6)
            else:
                idf = math.log(1 + (self.n - df + 0.5) / (df + 0.5))
            scores[ids] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[ids] / avg))
        return scores


def same_top(found: list[int], scores: np.ndarray) -> bool:
    """Whether `found` is a right top 10 for these reference scores: as many results as chunks that score,
    every one scoring at least the 10th best score, none missing above it (chunks that tie at the 10th
    score may stand in for each other)."""
    matching = int((scores > 0).sum())
    if len(found) != min(K, matching):
        return False
    if not found:
        return True
    cut = float(np.sort(scores)[-len(found)])
    above = set(np.flatnonzero(scores > cut + 1e-9).tolist())
    return above <= set(found) and all(scores[d] >= cut - 1e-9 for d in found)


def latency(fn, queries: list[list[str]]) -> tuple[float, float, list[list[int]]]:  # type: ignore[no-untyped-def]
    times, results = [], []
    for q in queries:
        started = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 95)), results


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_fts5(base: Path, docs: list[list[str]], queries: list[list[str]]):  # type: ignore[no-untyped-def]
    path = base / "fts5.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize='unicode61 remove_diacritics 2')")
    started = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO t(rowid, text) VALUES (?, ?)", ((i, " ".join(d)) for i, d in enumerate(docs)))
    conn.execute("INSERT INTO t(t) VALUES ('optimize')")
    conn.commit()
    build = time.perf_counter() - started

    def search(terms: list[str]) -> list[int]:
        match = " OR ".join(f'"{t}"' for t in terms)
        return [r[0] for r in conn.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?", (match, K))]

    return build, os.path.getsize(path), latency(search, queries), "fts5"


def run_tantivy(base: Path, docs: list[list[str]], queries: list[list[str]]):  # type: ignore[no-untyped-def]
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("id", stored=True, indexed=False)
    builder.add_text_field("text", tokenizer_name="whitespace", index_option="freq")
    schema = builder.build()
    folder = base / "tantivy"
    folder.mkdir()
    index = tantivy.Index(schema, path=str(folder))
    started = time.perf_counter()
    writer = index.writer(heap_size=500_000_000, num_threads=2)
    for i, d in enumerate(docs):
        writer.add_document(tantivy.Document(id=i, text=" ".join(d)))
    writer.commit()
    writer.wait_merging_threads()
    build = time.perf_counter() - started
    index.reload()
    searcher = index.searcher()

    def search(terms: list[str]) -> list[int]:
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t)) for t in terms])
        hits = searcher.search(query, K).hits  # the chunk ids read back from the store, as a search must
        return [int(searcher.doc(address)["id"][0]) for _, address in hits]

    return build, folder_size(folder), latency(search, queries), "lucene"


def run_bm25s(base: Path, docs: list[list[str]], queries: list[list[str]]):  # type: ignore[no-untyped-def]
    import bm25s

    started = time.perf_counter()
    retriever = bm25s.BM25(method="lucene", k1=K1, b=B)
    retriever.index(docs, show_progress=False)
    build = time.perf_counter() - started
    folder = base / "bm25s"
    retriever.save(str(folder))

    def search(terms: list[str]) -> list[int]:
        known = [t for t in terms if t in retriever.vocab_dict]
        if not known:
            return []
        ids, scores = retriever.retrieve([known], k=K, show_progress=False, n_threads=1)
        return [int(i) for i, s in zip(ids[0], scores[0]) if s > 0]

    return build, folder_size(folder), latency(search, queries), "lucene"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--engines", default="fts5,tantivy,bm25s")
    args = parser.parse_args()
    started = time.perf_counter()
    a = analyzer()
    docs = [fold(a.passage_terms(t, "en")).split() for t in corpus(args.chunks)]
    analysed_s = time.perf_counter() - started
    queries = questions(args.queries)
    reference = Reference(docs)
    quantized = np.array([fieldnorm(len(d)) for d in docs], dtype=np.float64)
    base = Path(tempfile.mkdtemp(prefix="rag-keyword-engines-", dir=os.environ.get("RAG_BENCH_TMP")))
    summary = {"chunks": args.chunks, "queries": len(queries), "analysis_s": round(analysed_s, 1)}
    try:
        for engine in args.engines.split(","):
            build, size, (p50, p95, results), formula = {"fts5": run_fts5, "tantivy": run_tantivy,
                                                          "bm25s": run_bm25s}[engine](base, docs, queries)
            exact = rounded = 0
            for terms, found in zip(queries, results):
                exact += same_top(found, reference.scores(terms, formula))
                if engine == "tantivy":
                    rounded += same_top(found, reference.scores(terms, formula, quantized))
            row = {"engine": engine, "build_s": round(build, 1), "size_mb": round(size / 1e6, 1),
                   "p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "top10_exact": round(exact / len(queries), 4)}
            if engine == "tantivy":
                row["top10_exact_with_its_rounded_lengths"] = round(rounded / len(queries), 4)
            print(json.dumps(row), flush=True)
            summary[f"{engine}_p50_ms"], summary[f"{engine}_p95_ms"] = row["p50_ms"], row["p95_ms"]
            summary[f"{engine}_top10_exact"] = row["top10_exact"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
