"""Hybrid retrieval pieces: keyword queries, fusion, and keyword search honouring index versions."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from ingest.job import run_ingest
from rag.index import IndexReader
from rag.qa import QAService
from rag.store import LANGUAGES_KEY, ChunkStore, connect
from rag.search import (ConvexFusion, Fusion, RankFusion, Searcher, convex_fusion, keyword_match, keyword_terms,
                        reciprocal_rank_fusion)
from tests.docgen import HANGAR_QUESTION, write_hangar_pages


def test_keyword_query_keeps_content_words_quoted(tmp_path: Path) -> None:
    store = ChunkStore(connect(tmp_path))
    store.set_meta(LANGUAGES_KEY, '["en"]')

    def keyword_query(text: str) -> str | None:
        return keyword_match(store, keyword_terms(text))

    assert keyword_query('What is the VPN\'s "portal" address?') == '"vpn" OR "portal" OR "address"'
    assert keyword_query("who is it?") is None
    # FTS5 syntax in a question is only ever words (stemmed): no operator, column filter or prefix gets through
    assert keyword_query('NEAR(budget) title:memo* "q') == '"near" OR "budget" OR "titl" OR "memo"'
    # in an index of English and German passages, a word meets both languages' forms
    store.set_meta(LANGUAGES_KEY, '["de", "en"]')
    assert keyword_query("Kennwörter") == '("kennwort" OR "kenn" OR "wort" OR "kennwörter")'


def test_convex_fusion_keeps_confidence() -> None:
    dense = [(1, 0.80), (2, 0.78), (3, 0.40)]
    keyword = [(3, 30.0), (1, 3.0)]  # BM25 is sure about 3
    fused = [i for i, _ in convex_fusion(dense, keyword, alpha=0.6, pool=3)]
    assert fused[0] == 3 and set(fused) == {1, 2, 3}
    assert [i for i, _ in convex_fusion(dense, [], alpha=0.6, pool=3)] == [1, 2, 3]
    # a lone keyword match must beat a slightly better dense-only candidate that shares no keyword
    lone = convex_fusion([(1, 0.22), (2, 0.18), (3, 0.1)], [(2, 3.3)], alpha=0.6, pool=3)
    assert lone[0][0] == 2


@pytest.mark.parametrize("fusion", [ConvexFusion(0.6), RankFusion(0.6, 60.0)], ids=["convex", "rrf"])
def test_every_fusion_ranks_each_candidate_once_best_first(fusion: Fusion) -> None:
    dense = [(1, 0.9), (2, 0.8), (3, 0.5)]
    keyword = [(3, 9.0), (4, 2.0)]
    fused = fusion.fuse(dense, keyword, pool=3)
    ids = [i for i, _ in fused]
    assert sorted(ids) == [1, 2, 3, 4] and len(set(ids)) == len(ids)
    assert [s for _, s in fused] == sorted((s for _, s in fused), reverse=True)
    assert ids[0] in (1, 3)  # the best of one side, or the candidate both sides found
    assert fusion.fuse([], [], pool=3) == []


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], [1.0, 1.0], k=60)
    assert [i for i, _ in fused] == [1, 3, 2]


def test_keyword_search_sees_only_the_published_version(make_settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The zeppelin hangar opens at dawn.\n")
    settings = make_settings()
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    assert searcher.search("zeppelin", mode="keyword").hits[0].path.endswith("a.txt")
    (docs / "a.txt").write_text("The airship hangar opens at dusk.\n")
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    # the old row still exists (a reader on version 1 may need it) but version 2 must not match it
    assert searcher.search("zeppelin", mode="keyword").hits == []
    hybrid = searcher.search("airship hangar", mode="hybrid").hits
    assert "dusk" in hybrid[0].text and hybrid[0].dense_score is not None


def test_each_page_shows_its_best_chunk_before_any_page_shows_a_second(make_settings, embedder,
                                                                        tmp_path: Path) -> None:
    # a long page whose every paragraph is about the hangar would fill the top k, and push out the other
    # page that answers; the searcher shows each page's best chunk first, then the rest by score
    docs = write_hangar_pages(tmp_path / "docs")
    settings = make_settings(chunk_tokens=24, chunk_overlap_tokens=0)
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    by_score = searcher.search(HANGAR_QUESTION, 12, distinct=False).hits
    assert [h.path.endswith("hangar.txt") for h in by_score[:2]] == [True, True]  # the long page leads
    distinct = searcher.search(HANGAR_QUESTION, 2).hits
    assert sorted(h.path.rsplit("/", 1)[-1] for h in distinct) == ["gate.txt", "hangar.txt"]
    assert distinct[0].chunk_id == by_score[0].chunk_id
    # past the pages' best chunks, the others follow in their order
    everything = searcher.search(HANGAR_QUESTION, len(by_score)).hits
    assert sorted(h.chunk_id for h in everything) == sorted(h.chunk_id for h in by_score)
    second = [h.chunk_id for h in by_score if h.chunk_id not in {d.chunk_id for d in distinct}]
    assert [h.chunk_id for h in everything[2:]] == second
    # an answer's passages are the chunks by score (neighbours merged): the long page's two best, not the other
    retrieved = QAService(searcher, None, settings.answers).retrieve(  # type: ignore[arg-type]  # no generator
        HANGAR_QUESTION, passages=2)
    assert {h.path.rsplit("/", 1)[-1] for h in retrieved.hits} == {"hangar.txt"}
    assert sum(h.text.count("zeppelin hangar") for h in retrieved.hits) == 2


@pytest.mark.parametrize("few_unseen", [5000, 0])  # the rows unseen checked by their list, or one by one
def test_word_statistics_see_only_the_published_version(make_settings, embedder, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, few_unseen: int) -> None:
    # the rows a run replaced stay stored until the next one (readers of the version before may need them),
    # and a run's new rows are stored before it publishes: neither may count in the rarity of a question's
    # words, which weighs quotes and abstention (an upgrade that re-reads every file doubled every count)
    monkeypatch.setattr("rag.store._FEW_UNSEEN", few_unseen)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The zeppelin hangar opens at dawn.\n")
    (docs / "b.txt").write_text("The hangar doors close at night.\n")
    settings = make_settings()
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    (docs / "a.txt").write_text("The airship hangar opens at dusk.\n")
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    total, presence = searcher.term_statistics(["zeppelin", "hangar", "airship"], [])
    assert total == 2 and presence["zeppelin"][0] == 0 and presence["hangar"][0] == 2 and presence["airship"][0] == 1
    assert searcher.unknown_words(["zeppelin", "airship"]) == {"zeppelin"}
    version = searcher.current().manifest.version
    with closing(connect(settings.index.dir)) as conn, conn:  # a run's row stored as a writer does, unpublished
        row = conn.execute("INSERT INTO chunks (doc_id, position, page, title, text, text_hash, embedding, "
                           "added_version) SELECT doc_id, 99, page, title, 'A zeppelin again.', x'00', embedding, ? "
                           "FROM chunks LIMIT 1", (version + 1,)).lastrowid
        conn.execute("INSERT INTO chunk_terms(rowid, text, title, section) VALUES (?, 'zeppelin', '', '')", (row,))
    with closing(connect(settings.index.dir)) as conn:
        assert ChunkStore(conn).match_count("zeppelin") == 2  # both rows are there
    assert searcher.term_statistics(["zeppelin"], [])[1]["zeppelin"][0] == 0
    assert searcher.unknown_words(["zeppelin"]) == {"zeppelin"}


def test_hybrid_searches_at_once_answer_as_one_at_a_time(make_settings, embedder, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hybrid search's keyword side runs in a thread beside the question's embedding: eight threads
    searching at once get exactly what one search at a time gets, a forked process makes its own threads, and
    a failure of the keyword side reaches the caller."""
    from concurrent.futures import ThreadPoolExecutor

    docs = tmp_path / "docs"
    docs.mkdir()
    places = ["harbour", "orchard", "quarry", "lighthouse", "vineyard", "glacier", "bakery", "foundry"]
    for i, place in enumerate(places):
        for j in range(4):
            (docs / f"{place}-{j}.txt").write_text(f"Visit {j} to the {place} starts at {8 + i}:{15 * j:02} with "
                                                   f"badge {i * 10 + j}.\n")
    settings = make_settings()
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    questions = [f"When does the {place} visit start?" for place in places] + ["badge 42", "quarry glacier"]

    def ranked(question: str) -> list[tuple[int, float]]:
        return [(h.chunk_id, h.score) for h in searcher.search(question, 5, "hybrid").hits]

    alone = {q: ranked(q) for q in questions}
    assert all(alone.values())
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ranked, questions * 4))
    assert together == [alone[q] for q in questions * 4]

    # a process forked after those searches has none of its parent's threads: it makes its own (a whole
    # search cannot be tried there: FAISS's OpenMP, used before the fork, hangs in a forked child)
    import multiprocessing

    def child() -> None:
        raise SystemExit(0 if Searcher._beside().submit(len, "four").result(timeout=30) == 4 else 3)

    forked = multiprocessing.get_context("fork").Process(target=child)
    forked.start()
    forked.join(60)
    if forked.is_alive():
        forked.kill()
    assert forked.exitcode == 0

    def broken(*args: object) -> None:
        raise RuntimeError("the keyword side broke")

    monkeypatch.setattr(searcher.keyword, "retrieve", broken)
    with pytest.raises(RuntimeError, match="the keyword side broke"):
        searcher.search(questions[0], 5, "hybrid")


def test_common_words_are_pruned_from_keyword_queries_on_large_indexes(make_settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(20):
        (docs / f"memo{i}.txt").write_text(f"Project update {i}: the team will review the budget.\n")
    (docs / "kiln.txt").write_text("The kiln in the pottery studio is fired on Fridays.\n")
    settings = make_settings(keyword_prune_above=0, keyword_max_df=0.2, keyword_engine="sqlite")  # FTS5's pruning
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    # "project", "update", "team", "review" are in every memo; the three rarest words stay
    match = searcher.keyword.match("project update team review kiln pottery fridays", searcher.current())
    assert match == '"kiln" OR "potteri" OR "friday"'  # as the index stores them: Snowball stems
    assert searcher.search("project update team review kiln pottery fridays", mode="keyword").hits[0].path.endswith(
        "kiln.txt")
    unpruned = Searcher(embedder, IndexReader(make_settings().index), make_settings(keyword_engine="sqlite").search)
    view = unpruned.current()
    assert unpruned.keyword.match("project update team review kiln", view) == keyword_match(
        view.store, keyword_terms("project update team review kiln"))


@pytest.mark.slow  # a 12,000-vector IVF-PQ index built and searched
def test_a_compressed_index_is_rescored_exactly(make_settings, embedder, tmp_path: Path) -> None:
    """12,000 chunks in an IVF-PQ index: the dense results match exact search, with exact cosines."""
    import numpy as np

    from rag.index import IndexWriter
    from rag.types import ChunkInput, DocumentInput

    topics = ["vacation", "payroll", "VPN", "parking", "badges", "printers", "expenses", "laptops", "cafeteria",
              "security", "travel", "onboarding", "pensions", "overtime", "training"]
    sentences = [f"Policy {i} explains {topics[i % 15]} rules for team {i // 15} in section {i % 7}." for i in range(300)]
    base = embedder.embed_batch(sentences)
    rng = np.random.default_rng(0)
    a = rng.random((12_000, 1), dtype=np.float32)
    vectors = a * base[rng.integers(0, 300, 12_000)] + (1 - a) * base[rng.integers(0, 300, 12_000)]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    settings = make_settings(exact_max_vectors=100, compressed_min_vectors=1_000, ivf_nprobe=64)
    docs = [DocumentInput(path_key=f"/d/{i}.txt".encode(), path=f"/d/{i}.txt", title="t", size=1, mtime_ns=1,
                          content_hash=str(i), chunks=(ChunkInput(f"chunk {i}", 0),)) for i in range(12_000)]
    with IndexWriter.open(settings.index, embedder.model_id) as writer:
        writer.write_batch(docs, vectors.astype(np.float32), [])
        writer.publish(vectors.shape[1])
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    assert searcher.current().manifest.index_type == "ivfpq"
    chunk_ids = {f"/d/{i}.txt": i for i in range(12_000)}
    found_total = 0
    for question in ("How many vacation days?", "Who fixes the VPN?", "Where can I park?", "expense claims"):
        query = embedder.embed_batch([question])[0]
        truth = set(np.argsort(-(vectors @ query))[:5].tolist())
        hits = searcher.search(question, 5, "dense").hits
        found_total += len(truth & {chunk_ids[h.path] for h in hits})
        for h in hits:  # scores are the exact cosines, not PQ approximations
            assert h.dense_score == pytest.approx(float(vectors[chunk_ids[h.path]] @ query), abs=1e-4)
    assert found_total / 20 >= 0.8


def test_the_fast_question_path_embeds_exactly_like_encode(embedder) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    questions = ["When is lunch served?", "x", "a long question about parental leave " * 40]
    fast = embedder.embed_batch(questions)  # up to SMALL_BATCH texts skip encode()
    slow = embedder.model.encode(questions, normalize_embeddings=True, convert_to_numpy=True)
    assert fast.dtype == np.float32 and np.allclose(fast, slow, atol=1e-6)
