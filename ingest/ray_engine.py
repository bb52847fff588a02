"""`rag ingest --engine ray`: parse and embed on a Ray cluster; decide, commit and publish here.

Ray Data streams the changed files through a pool of parser actors (each runs the same sandboxed
parser process as the local engine, so a hostile file costs a worker its time limit, never the job).
The parsed chunks come back to this process, which commits them through the same path as the local
engine: chunks whose text is already stored reuse their vector, and only the others are sent to the
embedding actors (each loads the model once; on GPUs when the cluster has them). So an edit to one
section of a manual embeds that section, on Ray as locally, and the summary, the incremental
behaviour and the crash safety are the local engine's.

Locally it starts an in-process Ray; with RAY_ADDRESS set it joins that cluster. Every node needs this
package and the embedding model at the same paths (the same image). Ray's usage statistics are off.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict
from types import TracebackType
from typing import Any

import numpy as np

from ingest.worker import Outcome, ParserPool, Task, WorkerConfig
from rag.settings import EmbeddingSettings, IngestSettings

log = logging.getLogger(__name__)
EMBED_BATCH = 64  # texts per call to one embedding actor


class _Parse:
    """A Ray Data actor: one sandboxed parser process, reused for every file the actor gets."""

    def __init__(self, config: dict, timeout_s: float) -> None:
        self.pool = ParserPool(WorkerConfig(**config), 1, timeout_s)

    def __call__(self, row: dict) -> dict:
        task = Task(**json.loads(row["task"]))
        [(_, outcome)] = self.pool.map_unordered([task], idle_s=None)
        return {"task": row["task"], "outcome": json.dumps(asdict(outcome))}


class _Embed:
    """A Ray actor: the embedding model, loaded once."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        from rag.embedding import make_embedder

        self.embedder = make_embedder(settings)

    def model_id(self) -> str:
        return self.embedder.model_id

    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed_batch(texts)


class RayEmbedder:
    """The `Embedder` the commit path calls: texts spread over the cluster's embedding actors."""

    def __init__(self, pool: Any, model_id: str) -> None:
        self._pool = pool
        self.model_id = model_id
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(next(iter(self._pool.map(lambda actor, _: actor.dim.remote(), [None]))))
        return self._dim

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        pieces = [texts[i:i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]
        return np.vstack(list(self._pool.map(lambda actor, part: actor.embed.remote(part), pieces)))


class RayEngine:
    """Parser and embedding actors on a Ray cluster for one ingest run (a context manager)."""

    def __init__(self, config: WorkerConfig, settings: IngestSettings, embedding: EmbeddingSettings,
                 model_id: str) -> None:
        self.config = config
        self.settings = settings
        self.embedding = embedding
        self.model_id = model_id
        self._started_here = False
        self.embedder: RayEmbedder
        self.commit_chunks = settings.commit_chunks

    def __enter__(self) -> "RayEngine":
        import ray
        from ray.util import ActorPool

        self._started_here = _start_ray(self.settings)
        try:
            resources = ray.cluster_resources()
            gpus = int(resources.get("GPU", 0)) if self.settings.device != "cpu" else 0
            # one embedder per GPU; on CPUs one per 4 cores (each uses several threads)
            count = gpus or max(1, int(resources.get("CPU", 1)) // 4)
            actor = ray.remote(num_gpus=1 if gpus else 0)(_Embed)
            actors = [actor.remote(self.embedding) for _ in range(count)]
            remote_id = ray.get(actors[0].model_id.remote())
            if remote_id != self.model_id:
                raise RuntimeError(f"the Ray cluster's embedding model is {remote_id}, this index's is "
                                   f"{self.model_id}: give every node the same model folder")
            self.embedder = RayEmbedder(ActorPool(actors), remote_id)
            # small commits keep every embedding actor busy while the parsers go on (one commit of
            # `commit_chunks` at the end of a small run left them idle through all the parsing)
            self.commit_chunks = min(self.settings.commit_chunks, EMBED_BATCH * len(actors))
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._started_here:
            import ray

            ray.shutdown()
            self._started_here = False

    def parse(self, tasks: list[Task]) -> Iterator[tuple[Task, Outcome] | None]:
        """(task, outcome) for every task, in completion order, parsed on the cluster."""
        import ray

        ds = ray.data.from_items([{"task": json.dumps(asdict(t))} for t in tasks])
        ds = ds.map(_Parse, fn_constructor_kwargs={"config": asdict(self.config),
                                                   "timeout_s": self.settings.parse_timeout_s},
                    concurrency=max(1, self.settings.parse_workers))
        for row in ds.iter_rows():
            yield Task(**json.loads(row["task"])), Outcome.from_json(row["outcome"])


def _start_ray(settings: IngestSettings) -> bool:
    """Join RAY_ADDRESS's cluster, or start a local Ray; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray reports usage to its makers by default
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if not os.environ.get("RAY_ADDRESS"):
        # loopback only: a local Ray needs no other interface (and the tests run without one)
        kwargs.update(num_cpus=max(2, settings.parse_workers + 1), _node_ip_address="127.0.0.1")
    ray.init(**kwargs)
    return True
