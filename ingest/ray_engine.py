"""`rag ingest --engine ray`: parse, chunk and embed on a Ray cluster; decide, commit and publish here.

Ray Data streams the changed files through two pools of actors: parsers (each runs the same sandboxed
parser process as the local engine, so a hostile file costs a worker its time limit, never the job)
and embedders (each loads the embedding model once; on GPUs when the cluster has them). This process
keeps what makes a run safe: it decides what changed, commits batches and publishes one index version,
so the summary, the incremental behaviour and the crash safety are the local engine's.

Locally it starts an in-process Ray; with RAY_ADDRESS set it joins that cluster. Every node needs this
package and the embedding model at the same paths (the same image). Ray's usage statistics are off.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict

import numpy as np

from ingest.worker import Outcome, ParserPool, Task, WorkerConfig
from rag.settings import Settings

log = logging.getLogger(__name__)


class _Parse:
    """A Ray actor: one sandboxed parser process, reused for every file the actor gets."""

    def __init__(self, config: dict, timeout_s: float) -> None:
        self.pool = ParserPool(WorkerConfig(**config), 1, timeout_s)

    def __call__(self, row: dict) -> dict:
        task = Task(**json.loads(row["task"]))
        outcome = next(iter(self.pool.map_unordered([task])))[1]
        return {"task": row["task"], "outcome": json.dumps(asdict(outcome))}


class _Embed:
    """A Ray actor: the embedding model, loaded once, embedding each batch's chunks in one call."""

    def __init__(self, settings_json: str) -> None:
        from rag.embedding import make_embedder

        self.embedder = make_embedder(Settings(**json.loads(settings_json)))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = [json.loads(o) for o in batch["outcome"]]
        texts = [text for o in outcomes if o["ok"] for text, _ in o["chunks"]]
        vectors = self.embedder.embed_batch(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        out, start = [], 0
        for o in outcomes:
            n = len(o["chunks"]) if o["ok"] else 0
            out.append(vectors[start:start + n].tobytes() if n else b"")
            start += n
        return {"task": batch["task"], "outcome": batch["outcome"], "vectors": np.array(out, dtype=object)}


def _start_ray(settings: Settings) -> bool:
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


def parse_and_embed(config: WorkerConfig, tasks: list[Task], settings: Settings
                    ) -> Iterator[tuple[Task, Outcome, np.ndarray | None]]:
    """(task, outcome, vectors of its chunks) for every task, in completion order."""
    import ray

    started_here = _start_ray(settings)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if settings.device != "cpu" else 0
        # one embedder per GPU; on CPUs one per 4 cores (each uses several threads)
        embedders = gpus or max(1, int(resources.get("CPU", 1)) // 4)
        ds = ray.data.from_items([{"task": json.dumps(asdict(t))} for t in tasks])
        ds = ds.map(_Parse, fn_constructor_kwargs={"config": asdict(config), "timeout_s": settings.parse_timeout_s},
                    concurrency=max(1, settings.parse_workers))
        ds = ds.map_batches(_Embed, fn_constructor_kwargs={"settings_json": settings.model_dump_json()},
                            batch_size=64, batch_format="numpy", concurrency=embedders, num_gpus=1 if gpus else 0)
        for row in ds.iter_rows():
            outcome = Outcome(**json.loads(row["outcome"]))
            vectors = None
            if outcome.ok and outcome.chunks:
                vectors = np.frombuffer(row["vectors"], dtype=np.float32).reshape(len(outcome.chunks), -1)
            yield Task(**json.loads(row["task"])), outcome, vectors
    finally:
        if started_here:
            ray.shutdown()
