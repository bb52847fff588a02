"""GPU paths: fp16 embeddings and a FAISS index on the GPU. Skipped where torch sees no CUDA device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.job import run_ingest
from rag.embedding import SentenceTransformerEmbedder
from rag.index import IndexReader, faiss_gpu_count
from rag.search import Searcher
from tests.conftest import write_corpus


@pytest.mark.gpu
def test_ingest_and_search_on_the_gpu(make_settings, embedder, tmp_path: Path) -> None:
    questions = write_corpus(tmp_path / "docs")
    settings = make_settings(device="cuda")
    gpu_embedder = SentenceTransformerEmbedder(settings.embedding)
    gpu_embedder.warm_up()
    assert gpu_embedder.device == "cuda" and gpu_embedder.batch_size == 128
    assert gpu_embedder.model_id == embedder.model_id  # same model, same index
    texts = list(questions)
    agreement = np.sum(gpu_embedder.embed_batch(texts) * embedder.embed_batch(texts), axis=1)
    assert agreement.min() > 0.999  # fp16 on the GPU, fp32 on the CPU: the same vectors for search
    run_ingest(settings, [tmp_path / "docs"], embedder=gpu_embedder, progress=False)
    searcher = Searcher(gpu_embedder, IndexReader(settings.index), settings.search)
    for result in searcher.search_batch(texts, k=3):
        assert Path(result.hits[0].path).name == questions[result.query]
    if faiss_gpu_count():
        assert searcher.reader.vectors is not None and searcher.reader.vectors.device.startswith("cuda")
