"""Parse engines: what turns planned files into parsed documents, and embeds the chunks the index lacks.

An engine only parses and embeds; the ingest job decides what to parse (ingest/plan.py) and commits
everything it gets through one path (ingest/commit.py), which reuses stored vectors by content hash
whatever the engine. Two implementations: `LocalEngine` (sandboxed parser processes here, the
embedding model in this process) and `RayEngine` (ingest/ray_engine.py: both on a Ray cluster).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Literal, Protocol

from ingest.worker import Outcome, ParserPool, Task, WorkerConfig
from rag.embedding import Embedder
from rag.settings import EmbeddingSettings, IngestSettings

EngineName = Literal["local", "ray"]


class ParseEngine(Protocol):
    """Parses tasks (in any order) and embeds texts; used as a context manager around one run.

    `commit_chunks`: how many chunks the run commits (and so embeds) at a time with this engine.
    `parse` yields (task, outcome) as files finish, and may yield None while it waits (a long scan being
    read): the run commits what it holds then, so finished files do not wait behind a slow one.
    """

    embedder: Embedder
    commit_chunks: int

    def parse(self, tasks: list[Task]) -> Iterator[tuple[Task, Outcome] | None]: ...

    def __enter__(self) -> "ParseEngine": ...

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None: ...


class LocalEngine:
    """Sandboxed parser processes on this machine (ingest/worker.py); the embedder runs in this process."""

    def __init__(self, config: WorkerConfig, settings: IngestSettings, embedder: Embedder) -> None:
        self.config = config
        self.workers = settings.parse_workers
        self.timeout_s = settings.parse_timeout_s
        self.embedder = embedder
        self.commit_chunks = settings.commit_chunks

    def parse(self, tasks: list[Task]) -> Iterator[tuple[Task, Outcome] | None]:
        return ParserPool(self.config, self.workers, self.timeout_s).map_unordered(tasks)

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        return None


def make_engine(name: EngineName, config: WorkerConfig, settings: IngestSettings, embedding: EmbeddingSettings,
                embedder: Embedder) -> ParseEngine:
    """The engine `rag ingest --engine` names; `embedder` is the local one (the Ray engine loads the
    `embedding` model on its cluster and checks that the model ids agree)."""
    if name == "ray":
        from ingest.ray_engine import RayEngine

        return RayEngine(config, settings, embedding, embedder.model_id)
    if name == "local":
        return LocalEngine(config, settings, embedder)
    raise ValueError(f"unknown ingest engine {name!r}: use 'local' or 'ray'")
