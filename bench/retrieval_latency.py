"""Retrieval latency at 100k chunks: our search (embed + search + fuse) beside LangChain's FAISS
similarity_search over the same texts and vectors.

Texts are real passages from ../shared/eval cut and recombined into 100k distinct chunks; their vectors
are mixed from the passages' real MiniLM embeddings (as bench/ann_recall.py), written through the
normal index writer, so the index is the one `rag ingest` would publish (IVF above 50k vectors).
Queries are real questions, one at a time, as a user would send them. Our search runs with each
embedding backend that makes these (fp32) vectors: PyTorch, and ONNX Runtime fp32 (what "auto" picks
for an fp32 index). Also: the recall cost of keyword pruning (RAG_KEYWORD_MAX_DF), as the share of the
unpruned keyword and hybrid top 10 that the pruned search still returns; and the keyword engines side by
side (`engines`): tantivy and FTS5, for an admin and for a user who may read a tenth of the chunks (each
document belongs to one of ten teams), tantivy's top 10 against a brute-force BM25, sizes on disk.

`--backend onnx-int8` builds the index with int8 vectors instead (the passages embedded by ONNX int8: what a
new index gets on a CPU with VNNI), in latency-N-int8.

    .venv/bin/python bench/retrieval_latency.py [--chunks 100000] [--queries 200] [--no-langchain]
    .venv/bin/python bench/retrieval_latency.py --chunks 1000000 --backend onnx-int8 --build-only
    .venv/bin/python bench/retrieval_latency.py --chunks 1000000 --backend onnx-int8 --engines-only --engines tantivy
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.ann_recall import real_vectors
from bench.ingest_vs_langchain import shared_passages
from rag.embedding import Embedder, SentenceTransformerEmbedder, make_embedder
from rag.index import IndexReader, IndexWriter
from rag.search import Searcher, question_words
from rag.settings import load_settings
from rag.types import ChunkInput, DocumentInput, Principal

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "eval"


def passages() -> list[str]:
    return shared_passages(900)  # the cut bench/ann_recall.py's real vectors were made from


def build(index_dir: Path, n: int, embedder: Embedder) -> tuple[list[str], np.ndarray]:
    base_vectors, _ = real_vectors(embedder)
    texts_in = passages()
    assert len(texts_in) == len(base_vectors)
    rng = np.random.default_rng(0)
    a_idx, b_idx = rng.integers(0, len(texts_in), n), rng.integers(0, len(texts_in), n)
    alpha = rng.random((n, 1), dtype=np.float32)
    vectors = alpha * base_vectors[a_idx] + (1 - alpha) * base_vectors[b_idx]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"{texts_in[a][: len(texts_in[a]) // 2]} {texts_in[b][len(texts_in[b]) // 2:]}" for a, b in zip(a_idx, b_idx)]
    shutil.rmtree(index_dir, ignore_errors=True)
    settings = load_settings(index_dir=index_dir, device="cpu")
    with IndexWriter.open(settings.index, embedder.model_id) as writer:
        for start in range(0, n, 10_000):
            docs = [DocumentInput(path_key=f"/bench/doc-{d}.txt".encode(), path=f"/bench/doc-{d}.txt", title=f"doc {d}",
                                  size=1, mtime_ns=1, content_hash=str(d), groups=(f"team-{d % 10}",),
                                  chunks=tuple(ChunkInput(texts[i], i - d * 10) for i in range(d * 10, min(n, d * 10 + 10))))
                    for d in range(start // 10, min(n, start + 10_000) // 10)]
            writer.write_batch(docs, vectors[start:start + 10_000], [])
        writer.publish(vectors.shape[1])
    return texts, vectors


def timings(fn, queries: list[str]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(p50, p95) in ms of one query at a time."""
    times = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 95))


def p50(fn, queries: list[str]) -> float:  # type: ignore[no-untyped-def]
    return timings(fn, queries)[0]


def pruning_recall(settings, embedder, questions: list[str]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Share of the unpruned top 10 that the pruned search keeps, keyword and hybrid."""
    pruned = Searcher(embedder, IndexReader(settings.index), settings.search)
    full = Searcher(embedder, IndexReader(settings.index), replace(settings.search, keyword_prune_above=10**12))
    out = {}
    for mode in ("keyword", "hybrid"):
        kept = []
        for q in questions:
            want = {h.chunk_id for h in full.search(q, 10, mode).hits}
            got = {h.chunk_id for h in pruned.search(q, 10, mode).hits}
            kept.append(len(want & got) / max(1, len(want)))
        out[f"pruning_recall@10_{mode}"] = round(float(np.mean(kept)), 4)
    return out


def engines(settings, embedder, questions: list[str], exact: bool = True,  # type: ignore[no-untyped-def]
            which: tuple[str, ...] = ("tantivy", "sqlite")) -> dict[str, object]:
    """The keyword engines side by side on this index (one run): tantivy (the default) and FTS5 (with its
    pruning, as before tantivy), for an admin and for a user who may read a tenth of the chunks (one team of
    ten); tantivy's keyword top 10 against a brute-force BM25 over the same tokens; sizes on disk.

    To compare two versions of the search, run this (`--engines-only`) alternately under each checkout
    (PYTHONPATH=CHECKOUT:.): within one process a second configuration's idle threads (ONNX Runtime's
    spinning ones) would slow the first."""
    out: dict[str, object] = {}
    tenth = Principal(frozenset({"team-3"}))
    for engine in which:
        searcher = Searcher(embedder, IndexReader(settings.index), replace(settings.search, keyword_engine=engine))
        searcher.warm_up()
        for principal, who in ((None, "admin"), (tenth, "tenth")):
            for q in questions[:10]:
                searcher.search(q, 5, "hybrid", principal)
            for mode in ("keyword", "hybrid"):
                p50_ms, p95_ms = timings(lambda q, m=mode, p=principal: searcher.search(q, 5, m, p), questions)
                key = f"{'fts5' if engine == 'sqlite' else engine}_{who}_{mode}"
                out[f"{key}_p50_ms"], out[f"{key}_p95_ms"] = round(p50_ms, 2), round(p95_ms, 2)
        print(json.dumps(out), flush=True)
        if engine == "tantivy" and exact:
            out["tantivy_exact_top10"] = exact_share(settings, searcher, questions)
    folder = settings.index_dir
    out["size_mb"] = {name: round(sum(p.stat().st_size for p in ([folder / name] if (folder / name).is_file() else
                                                                  (folder / name).rglob("*")) if p.is_file()) / 1e6, 1)
                      for name in ("chunks.sqlite", "keywords", searcher.reader.manifest.vectors_file)}
    return out


def exact_share(settings, searcher: Searcher, questions: list[str]) -> float:  # type: ignore[no-untyped-def]
    """Share of the questions whose tantivy keyword top 10 is a right top 10 of a brute-force BM25 over the
    same tokens (bench/keyword_engines.py's formula and tie rule; a row's text, title and heading path in one
    field, as the copy indexes them)."""
    from bench.keyword_engines import K1, B, fieldnorm, same_top
    from rag.keywords import row_tokens, tokens

    view = searcher.current()
    wanted = {q: list(dict.fromkeys(t for w in question_words(view.store, q) for f in view.store.word_forms(w)
                                    for t in tokens(f))) for q in questions}
    vocabulary = {t for terms in wanted.values() for t in terms}
    with sqlite3.connect(settings.index_dir / "chunks.sqlite") as conn:
        rows = conn.execute("SELECT rowid, text, title, section FROM chunk_terms ORDER BY rowid").fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    lengths = np.zeros(len(rows))
    postings: dict[str, list[tuple[int, int]]] = {}
    for row, r in enumerate(rows):
        toks = row_tokens(*r[1:])
        lengths[row] = len(toks)
        for t in vocabulary.intersection(toks):  # in C; only the question words are counted
            postings.setdefault(t, []).append((row, toks.count(t)))
    arrays = {t: (np.array([x for x, _ in p]), np.array([c for _, c in p], dtype=np.float64))
              for t, p in postings.items()}
    del rows, postings
    n = len(ids)
    stored = np.array([fieldnorm(length) for length in range(int(lengths.max()) + 1)], dtype=np.float64)
    norms = stored[lengths.astype(np.int64)]  # each length as tantivy stores it (one byte)
    avg = float(lengths.mean())
    right = 0
    for q, terms in wanted.items():
        scores = np.zeros(n)
        for t in terms:
            if t not in arrays:
                continue
            rows_of, tf = arrays[t]
            idf = math.log(1 + (n - len(tf) + 0.5) / (len(tf) + 0.5))
            scores[rows_of] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * norms[rows_of] / avg))
        found = [int(np.searchsorted(ids, h.chunk_id)) for h in searcher.search(q, 10, "keyword").hits]
        right += same_top(found, scores)
    return round(right / len(wanted), 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-langchain", action="store_true")
    parser.add_argument("--no-exact", action="store_true", help="skip the brute-force check (minutes at 1M)")
    parser.add_argument("--backend", choices=("onnx", "onnx-int8"), default="onnx",
                        help="the index's vectors: fp32 (PyTorch's and ONNX fp32's), or ONNX int8 (what a new index "
                             "gets on a CPU with VNNI); int8 indexes live in latency-N-int8")
    parser.add_argument("--engines", nargs="+", choices=("tantivy", "sqlite"), default=["tantivy", "sqlite"],
                        help="the keyword engines --engines-only measures (FTS5's restricted search takes minutes at 1M)")
    parser.add_argument("--build-only", action="store_true", help="build the index, then stop (--engines-only next)")
    parser.add_argument("--engines-only", action="store_true",
                        help="reuse the index built by an earlier run (its keyword copy brought up to date) and "
                             "measure only the keyword engines")
    args = parser.parse_args()
    with open(SHARED / "boolq-dev" / "queries.jsonl") as f:
        questions = [json.loads(line)["question"] for line, _ in zip(f, range(args.queries))]
    int8 = args.backend == "onnx-int8"
    settings = load_settings(index_dir=REPO / "bench" / "out" / f"latency-{args.chunks}{'-int8' if int8 else ''}",
                             device="cpu")
    if args.engines_only:  # ONNX fp32 shares PyTorch's vectors; no PyTorch in this process
        onnx = make_embedder(replace(settings.embedding, backend=args.backend))
        with IndexWriter.open(settings.index, onnx.model_id) as writer:  # builds or updates the keyword copy
            writer.publish(None)
        print(json.dumps({"chunks": args.chunks, "backend": args.backend,
                          **engines(settings, onnx, questions, not args.no_exact, tuple(args.engines))}))
        return
    embedder: Embedder = (make_embedder(replace(settings.embedding, backend="onnx-int8")) if int8
                          else SentenceTransformerEmbedder(settings.embedding))
    embedder.warm_up()
    started = time.perf_counter()
    texts, vectors = build(settings.index_dir, args.chunks, embedder)
    print(f"built {args.chunks} chunks in {time.perf_counter() - started:.0f} s", flush=True)
    if args.build_only:
        return
    report: dict[str, object] = {"chunks": args.chunks}
    for backend in ("onnx-int8",) if int8 else ("torch", "onnx"):
        searcher = Searcher(make_embedder(replace(settings.embedding, backend=backend)), IndexReader(settings.index),
                            settings.search)
        searcher.warm_up()
        for q in questions[:10]:
            searcher.search(q, 5)
        for mode in ("dense", "keyword", "hybrid"):
            if mode == "keyword" and backend == "onnx":
                continue  # no embedding in keyword search
            p50_ms, p95_ms = timings(lambda q, m=mode: searcher.search(q, 5, m), questions)
            report[f"{backend}_{mode}_p50_ms"], report[f"{backend}_{mode}_p95_ms"] = round(p50_ms, 2), round(p95_ms, 2)
        print(json.dumps(report), flush=True)
    report.update(pruning_recall(settings, searcher.embedder, questions))
    unpruned = Searcher(searcher.embedder, IndexReader(settings.index),
                        replace(settings.search, keyword_prune_above=10**12))
    for mode in ("keyword", "hybrid"):
        p50_ms, p95_ms = timings(lambda q, m=mode: unpruned.search(q, 5, m), questions)
        report[f"unpruned_{mode}_p50_ms"], report[f"unpruned_{mode}_p95_ms"] = round(p50_ms, 2), round(p95_ms, 2)
    report["index_type"] = searcher.reader.manifest.index_type if searcher.reader.manifest else None
    report.update(engines(settings, searcher.embedder, questions, not args.no_exact))
    print(json.dumps(report), flush=True)
    if args.no_langchain:
        return

    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings

    lc_embeddings = HuggingFaceEmbeddings(model_name=str(embedder.folder), model_kwargs={"device": "cpu"},
                                          encode_kwargs={"normalize_embeddings": True})
    store = FAISS.from_embeddings(list(zip(texts, vectors.tolist())), lc_embeddings)
    for q in questions[:10]:
        store.similarity_search(q, k=5)
    langchain = p50(lambda q: store.similarity_search(q, k=5), questions)
    print(json.dumps({**report, "langchain_similarity_search_p50_ms": round(langchain, 2)}))


if __name__ == "__main__":
    main()
