"""Embedding backends: the contract every backend passes, the choice per CPU and index, the ONNX
conversion cache, and switching an index between kinds of vectors (re-embedded, resumable)."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from ingest.job import remove_paths, run_ingest
from rag.embedding import (
    Embedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    choose_backend,
    make_embedder,
    onnx_backend,
    vector_space,
)
from rag.index import IndexReader, Manifest, ModelMismatchError, RagIndexError, check_model, recorded_model_id
from rag.search import build_searcher
from rag.settings import ConfigError, EmbeddingSettings, Settings
from tests.conftest import SAMPLES, consistent

BACKENDS = ("torch", "onnx", "onnx-int8")
TEXTS = ["Employees get 25 vacation days a year.", "Staff receive twenty-five days of annual leave.",
         "The build server restarts every night at 2 am.", "", "x" * 5000]


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Embedder]:
    cache = Path(os.environ.get("RAG_TEST_MODEL_CACHE", Path(__file__).parents[1] / ".venv" / "test-model-cache"))
    base = EmbeddingSettings(model="", device="cpu", batch_size=0, model_cache_dir=cache)
    return {name: make_embedder(replace(base, backend=name)) for name in BACKENDS}  # type: ignore[arg-type]


# -- the contract: every backend -------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_keeps_the_embedder_contract(backends: dict[str, Embedder], name: str) -> None:
    embedder = backends[name]
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed_batch(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-4)
    # rows in input order whatever the batching inside; one text alone gives its row of the batch (int8:
    # nearly, as dynamic quantization scales activations per batch)
    floor = 0.98 if name == "onnx-int8" else 0.9999
    reordered = embedder.embed_batch(TEXTS[::-1])[::-1]
    assert np.min(np.sum(reordered[:3] * vectors[:3], axis=1)) > floor
    assert float(embedder.embed_batch([TEXTS[2]])[0] @ vectors[2]) > floor
    assert embedder.embed_batch([]).shape == (0, embedder.dim)
    # a question alone (ONNX: on its one-thread session) gives its row among many (the batch session's)
    questions = [f"Who looks after the {t}?" for t in ("printers", "badges", "parking", "payroll", "kiln", "boiler")]
    many = embedder.embed_queries(questions)
    assert min(float(embedder.embed_queries([q])[0] @ v) for q, v in zip(questions, many)) > floor
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated + 0.3
    # passages compared at question time: the same shape and order, the question's precision
    compared = embedder.embed_to_compare(TEXTS)
    assert compared.shape == vectors.shape and compared.dtype == np.float32
    assert np.min(np.sum(compared[:3] * vectors[:3], axis=1)) > 0.98
    assert embedder.embed_to_compare([]).shape == (0, embedder.dim)


def test_vector_kinds_and_ids(backends: dict[str, Embedder]) -> None:
    """fp32 ONNX gives PyTorch's vectors, so it shares the id (and existing indexes); int8 gets its own."""
    ref = backends["torch"].embed_batch(TEXTS[:3])
    fp32 = backends["onnx"].embed_batch(TEXTS[:3])
    int8 = backends["onnx-int8"].embed_batch(TEXTS[:3])
    assert np.min(np.sum(ref * fp32, axis=1)) > 0.9999
    assert 0.85 < np.min(np.sum(ref * int8, axis=1)) < 0.9999
    assert backends["onnx"].model_id == backends["torch"].model_id
    assert backends["onnx-int8"].model_id == backends["torch"].model_id + "+int8"
    assert [vector_space(backends[n].model_id) for n in BACKENDS] == ["fp32", "fp32", "int8"]


def test_int8_stores_int8_vectors_and_answers_in_fp32(backends: dict[str, Embedder]) -> None:
    """Only what an int8 index stores is int8: the question, and the passages compared with it while it is
    answered, are the fp32 export's vectors (int8 ones lost answers on real documents)."""
    fp32, int8 = backends["onnx"], backends["onnx-int8"]
    questions = ["How many vacation days do staff get?", "When does the build server restart?"]
    assert np.min(np.sum(int8.embed_queries(questions) * fp32.embed_queries(questions), axis=1)) > 0.9999
    assert np.min(np.sum(int8.embed_to_compare(TEXTS[:3]) * fp32.embed_batch(TEXTS[:3]), axis=1)) > 0.9999
    assert np.max(np.sum(int8.embed_batch(TEXTS[:3]) * fp32.embed_batch(TEXTS[:3]), axis=1)) < 0.9999
    # a question in fp32 still finds its passage among int8 ones
    stored = int8.embed_batch(TEXTS[:3])
    assert [int(np.argmax(stored @ q)) for q in int8.embed_queries(questions)] == [0, 2]


def test_answering_over_an_int8_index_loads_the_fp32_export_only(make_settings: Callable[..., Settings],
                                                                  tmp_path: Path) -> None:
    """A process that answers over an int8 index embeds its question, the sentences it quotes from and the
    support marks' claims in fp32, and never loads the int8 model (README: an answering process holds the
    fp32 one); indexing from the same process adds the int8 one for what it stores."""
    from rag.qa import QAService
    from tests.conftest import scripted_generator

    run_ingest(make_settings(embedding_backend="onnx-int8"), [SAMPLES], progress=False)
    settings = make_settings(answer_mode="extractive")  # auto: the index's int8 vectors
    searcher = build_searcher(settings)
    answer = QAService(searcher, scripted_generator("unused"), settings.answers).ask(
        "When is lunch served in the cafeteria?")
    assert "11:30" in answer.answer and answer.sources[0].path.endswith("cafeteria.html")
    embedder = searcher.embedder
    assert isinstance(embedder, OnnxEmbedder) and vector_space(embedder.model_id) == "int8"
    assert set(embedder._sessions) == {("quick", "fp32"), ("batch", "fp32")}
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "kiln.txt").write_text("The pottery kiln reaches 1,200 degrees on a full firing.\n")
    summary = run_ingest(settings, [tmp_path / "new"], progress=False, embedder=embedder)
    assert summary.chunks_embedded == 1 and not summary.files_failed
    assert ("batch", "int8") in embedder._sessions
    assert recorded_model_id(settings.index) == embedder.model_id  # the same kind of vectors stored


def test_constructing_an_embedder_loads_nothing(model_cache: Path) -> None:
    settings = EmbeddingSettings(model="", device="cpu", batch_size=0, backend="onnx-int8",
                                 model_cache_dir=model_cache)
    embedder = make_embedder(settings)
    assert isinstance(embedder, OnnxEmbedder) and embedder.device == "unloaded" and embedder.model_id


def test_batches_use_the_threads_omp_num_threads_allows(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's batch session follows OMP_NUM_THREADS as PyTorch and FAISS do (every core without it);
    a few questions use one thread either way."""
    settings = EmbeddingSettings(model="", device="cpu", batch_size=0, backend="onnx-int8", model_cache_dir=model_cache)
    for value, batch_threads in ((None, 0), ("1", 1), ("3", 3)):
        if value is None:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OMP_NUM_THREADS", value)
        embedder = make_embedder(settings)
        assert isinstance(embedder, OnnxEmbedder)
        vectors = embedder.embed_batch(["a passage about kilns"] * 8)
        assert vectors.shape == (8, embedder.dim)
        embedder.embed_queries(["how hot is a kiln?"])
        embedder.embed_to_compare(["a sentence to quote"])
        threads = {f"{kind} {precision}": session.get_session_options().intra_op_num_threads
                   for (kind, precision), session in embedder._sessions.items()}
        assert threads == {"batch int8": batch_threads, "quick fp32": 1, "batch fp32": batch_threads}, value


# -- the choice -----------------------------------------------------------------------------------
def _settings(backend: str = "auto") -> EmbeddingSettings:
    return EmbeddingSettings(model="", device="cpu", batch_size=0, backend=backend)  # type: ignore[arg-type]


def test_auto_picks_by_cpu_and_follows_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    vnni, plain = frozenset({"avx2", "avx512_vnni"}), frozenset({"avx2", "fma"})
    assert choose_backend(_settings(), flags=vnni).backend == "onnx-int8"
    assert choose_backend(_settings(), flags=plain).backend == "onnx"  # int8 without VNNI may saturate
    fp32_index, int8_index = "all-MiniLM-L6-v2@abc", "all-MiniLM-L6-v2@abc+int8"
    # an existing index keeps its kind of vectors on any CPU: no surprise re-embedding
    assert choose_backend(_settings(), fp32_index, flags=vnni).backend == "onnx"
    assert choose_backend(_settings(), int8_index, flags=plain).backend == "onnx-int8"
    explicit = choose_backend(_settings("torch"), int8_index, flags=vnni)
    assert explicit.backend == "torch" and "RAG_EMBEDDING_BACKEND" in explicit.reason
    # without ONNX Runtime: PyTorch, and an int8 index says what to do
    monkeypatch.setattr("rag.embedding.onnx_runtime_available", lambda: False)
    assert choose_backend(_settings(), flags=vnni).backend == "torch"
    assert choose_backend(_settings(), fp32_index).backend == "torch"
    with pytest.raises(ConfigError, match="install onnxruntime.*RAG_EMBEDDING_BACKEND=torch"):
        choose_backend(_settings(), int8_index)


def test_a_model_onnx_cannot_export_falls_back_to_torch(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for path in embedder.folder.iterdir():
        if path.suffix == ".safetensors":
            (folder / path.name).symlink_to(path)  # never written: the package's weights
        elif path.is_file() and path.name != "modules.json":
            shutil.copy(path, folder / path.name)
    (folder / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": '
                                         '"sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", '
                                         '"path": "1_Dense", "type": "sentence_transformers.models.Dense"}]')
    settings = replace(_settings(), model=str(folder))
    choice = choose_backend(settings, flags=frozenset({"avx512_vnni"}))
    assert choice.backend == "torch" and "Dense" in choice.reason
    with pytest.raises(ConfigError, match="Dense.*RAG_EMBEDDING_BACKEND=torch"):
        OnnxEmbedder(settings)


# -- the conversion cache --------------------------------------------------------------------------
def test_conversion_is_made_once_and_a_read_only_cache_still_works(
        tmp_path: Path, embedder: SentenceTransformerEmbedder, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    first = onnx_backend.converted_model(embedder.folder, cache, "int8")
    made = {p.name: p.stat().st_mtime_ns for p in first.parent.iterdir()}
    assert set(made) == {"model.onnx", onnx_backend.INT8_FILE}  # no temporary file left behind
    assert first.parent.stat().st_mode & 0o777 == 0o700  # the file that decides every vector: ours alone
    assert {p.stat().st_mode & 0o777 for p in first.parent.iterdir()} == {0o600}
    assert onnx_backend.converted_model(embedder.folder, cache, "int8") == first
    assert {p.name: p.stat().st_mtime_ns for p in first.parent.iterdir()} == made  # reused, not redone
    if os.geteuid() == 0:
        return  # root writes into a read-only folder anyway
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with caplog.at_level(logging.WARNING):
        fallback = onnx_backend.converted_model(embedder.folder, locked, "fp32")
    assert fallback.is_file() and locked not in fallback.parents and "not writable" in caplog.text


def test_a_read_only_cache_converts_into_a_private_folder(tmp_path: Path, embedder: SentenceTransformerEmbedder,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """As root (CI), permissions do not stop writes: a cache that is a file stands in for a read-only mount."""
    cache = tmp_path / "not-a-folder"
    cache.write_text("")
    with caplog.at_level(logging.WARNING):
        path = onnx_backend.converted_model(embedder.folder, cache, "fp32")
    assert path.is_file() and "not writable" in caplog.text and "RAG_MODEL_CACHE_DIR" in caplog.text


# -- switching an index ------------------------------------------------------------------------------
class FailingAfter:
    """An embedder that dies after `calls` batches, as a killed run would."""

    def __init__(self, inner: Embedder, calls: int) -> None:
        self.inner, self.calls, self.model_id = inner, calls, inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if self.calls <= 0:
            raise KeyboardInterrupt("killed")
        self.calls -= 1
        return self.inner.embed_batch(texts)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def embed_to_compare(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed_to_compare(texts)


def test_switching_backend_re_embeds_resumably_and_search_follows(
        make_settings: Callable[..., Settings], backends: dict[str, Embedder]) -> None:
    int8 = make_settings(embedding_backend="onnx-int8", commit_chunks=4)
    first = run_ingest(int8, [SAMPLES], progress=False)
    assert recorded_model_id(int8.index) == backends["onnx-int8"].model_id
    auto = make_settings()
    searcher = build_searcher(auto)  # a long-running page, configured "auto"
    before = searcher.search("how many vacation days", k=3).hits
    assert isinstance(searcher.embedder, OnnxEmbedder) and searcher.embedder.precision == "int8"

    # refused where vectors would mix: an explicit other backend searching the int8 index
    with pytest.raises(ModelMismatchError, match="holds int8 vectors.*RAG_EMBEDDING_BACKEND=auto"):
        build_searcher(make_settings(embedding_backend="torch")).search("vacation", k=1)

    torch_settings = make_settings(embedding_backend="torch", commit_chunks=4)
    with pytest.raises(KeyboardInterrupt):  # killed in the middle of re-embedding
        run_ingest(torch_settings, [SAMPLES], progress=False, embedder=FailingAfter(backends["torch"], 2))
    manifest = Manifest.read(int8.index.dir)
    assert manifest is not None and manifest.embedding_model.endswith("+int8")  # the published version is intact
    assert consistent(int8.index.dir)[1] == first.vectors_total
    assert searcher.search("how many vacation days", k=3).hits[0].path == before[0].path
    # a removal meanwhile is kept but not published: the working state mixes two kinds of vectors
    with pytest.raises(RagIndexError, match="being re-embedded.*run `rag ingest` to finish it"):
        remove_paths(int8.index, [str(SAMPLES / "it")], recorded_model_id(int8.index) or "", "ada")
    assert consistent(int8.index.dir)[1] == first.vectors_total

    resumed = run_ingest(torch_settings, [SAMPLES], progress=False, embedder=backends["torch"])
    assert 0 < resumed.chunks_reembedded < first.vectors_total  # what the killed run did is kept
    it_docs = sum(1 for p in (SAMPLES / "it").rglob("*") if p.is_file())
    assert resumed.files_unchanged == first.files_indexed - it_docs and resumed.chunks_added == 0
    assert recorded_model_id(torch_settings.index) == backends["torch"].model_id
    assert consistent(int8.index.dir)[0] == first.files_indexed - it_docs  # the removal is published now
    after = searcher.search("how many vacation days", k=3).hits  # the same process, now on fp32 vectors
    assert searcher.embedder.model_id == backends["torch"].model_id
    assert after[0].path == before[0].path
    again = run_ingest(auto, [SAMPLES], progress=False)
    assert again.chunks_reembedded == 0 and again.chunks_embedded == 0  # auto keeps the index's kind


def test_another_model_is_still_refused(make_settings: Callable[..., Settings], tmp_path: Path,
                                        embedder: SentenceTransformerEmbedder) -> None:
    settings = make_settings()
    run_ingest(settings, [SAMPLES / "hr"], progress=False, embedder=embedder)
    reader = IndexReader(settings.index)
    reader.refresh()
    assert reader.manifest is not None
    with pytest.raises(ModelMismatchError, match="built with embedding model .* configure the same model"):
        check_model(reader.manifest, reader.dir, "other-model@123456")


# -- prompts and languages (multilingual models by configuration) ---------------------------------------
@pytest.mark.parametrize("name", ["torch", "onnx"])
def test_a_models_prompts_go_before_questions_and_passages(backends: dict[str, Embedder], model_cache: Path,
                                                          name: str) -> None:
    """E5-style prompts ("query: ", "passage: "), from the settings or from the model folder's own
    config_sentence_transformers.json: each text embedded with its prompt, under another model id."""
    plain = backends[name]
    base = EmbeddingSettings(model="", device="cpu", batch_size=0, model_cache_dir=model_cache, backend=name)  # type: ignore[arg-type]
    prompted = make_embedder(replace(base, query_prefix="query: ", passage_prefix="passage: "))
    question, passage = "How many vacation days do I get?", TEXTS[0]
    assert float(prompted.embed_queries([question])[0] @ plain.embed_batch(["query: " + question])[0]) > 0.9999
    assert float(prompted.embed_batch([passage])[0] @ plain.embed_batch(["passage: " + passage])[0]) > 0.9999
    assert float(plain.embed_queries([question])[0] @ plain.embed_batch([question])[0]) > 0.9999  # none: as before
    assert prompted.model_id != plain.model_id  # an index is never mixed: the next run re-embeds
    assert vector_space(prompted.model_id) == vector_space(plain.model_id)


def test_a_model_folders_own_prompts_and_languages_are_read(tmp_path: Path, model_cache: Path) -> None:
    import json

    from rag.embedding.base import embedding_languages, model_languages, model_prompts, resolve_embedding_folder

    default = resolve_embedding_folder(EmbeddingSettings(model="", device="cpu", batch_size=0))
    folder = tmp_path / "multilingual-model"
    shutil.copytree(default, folder)
    config = folder / "config_sentence_transformers.json"
    data = json.loads(config.read_text()) if config.is_file() else {}
    data["prompts"] = {"query": "query: ", "passage": "passage: "}
    config.write_text(json.dumps(data))
    (folder / "README.md").write_text("---\nlanguage:\n- de\n- en\n- fr\nlicense: mit\n---\n# A model\n")
    settings = EmbeddingSettings(model=str(folder), device="cpu", batch_size=0, model_cache_dir=model_cache)
    assert model_prompts(folder, settings).query == "query: "
    assert model_prompts(folder, replace(settings, query_prefix="")).query == ""  # the settings win
    assert model_languages(folder) == ["de", "en", "fr"]
    # what the quote scorer is told (`rag.extractive.scorer_for`): the card's languages; English for the
    # packaged model; any language when a card does not say
    assert embedding_languages(settings) == ("de", "en", "fr")
    assert embedding_languages(replace(settings, model="")) == ("en",)
    (folder / "README.md").write_text("---\nlanguage: multilingual\n---\n")
    assert embedding_languages(settings) == ("*",)
    (folder / "README.md").write_text("# A model card without front matter\n")
    assert embedding_languages(settings) == ("*",)
    embedder = make_embedder(settings)
    own = make_embedder(EmbeddingSettings(model="", device="cpu", batch_size=0, model_cache_dir=model_cache))
    assert float(embedder.embed_queries(["vacation"])[0] @ own.embed_to_compare(["query: vacation"])[0]) > 0.9999


def test_doctor_says_which_languages_the_model_leaves_to_keywords(make_settings: Callable[..., Settings],
                                                                  tmp_path: Path, model_cache: Path) -> None:
    from ui.cli.doctor import check_index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "de.txt").write_text("Die Kennwörter der Benutzer laufen nach neunzig Tagen ab; die Änderung erfolgt "
                                 "im Portal unter Einstellungen.")
    (docs / "en.txt").write_text(TEXTS[0])
    settings = make_settings()
    run_ingest(settings, [docs], progress=False)
    languages = [c for c in check_index(settings) if c.name == "embedding languages"]
    assert languages[0].status == "warn" and "german (1 chunks)" in languages[0].detail
    assert "RAG_EMBEDDING_MODEL" in languages[0].detail
