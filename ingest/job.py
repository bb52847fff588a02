"""The ingest job: plan what changed, parse it with an engine, commit, publish a version."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ingest.commit import Committer, Progress
from ingest.engines import EngineName, make_engine
from ingest.plan import FailedFile, IngestProgress, IngestSummary, ProgressCallback, plan_changes
from ingest.sources import Source, make_sources
from ingest.walk import FoundFile, Skipped, display_path, is_under
from ingest.worker import WorkerConfig
from rag.analysis import analyzer
from rag.embedding import Embedder, make_embedder, model_max_tokens, resolve_backend, resolve_embedding_folder
from rag.index import IndexWriter, recorded_model_id
from rag.settings import EmbeddingSettings, IndexSettings, IngestSettings, Settings
from rag.store import SourceRecord, StoredDocument

log = logging.getLogger(__name__)
__all__ = ["FailedFile", "IngestProgress", "IngestSummary", "ProgressCallback", "run_ingest", "remove_paths",
           "restore_paths", "documents_under"]


def run_ingest(settings: Settings, paths: Sequence[Path | str | Source], *, embedder: Embedder | None = None,
               progress: bool | None = None, on_progress: ProgressCallback | None = None,
               engine: EngineName = "local", after_scan: Callable[[], None] | None = None,
               within: list[Path] | None = None) -> IngestSummary:
    """Bring the configured index up to date with the sources `paths` name: folders, and web sites by their
    address (ingest/sources.py).

    `progress`: a terminal progress bar (None: when stderr is a terminal); `on_progress`: called with an
    `IngestProgress` while the sources are scanned, as files are committed and before publishing, e.g. by
    the web page's job.
    `engine`: "local" parses in sandboxed processes here and embeds in this process; "ray" parses and
    embeds on a Ray cluster (ingest/ray_engine.py). Either way this process plans the run
    (ingest/plan.py), commits every parsed file through one path (ingest/commit.py: stored vectors
    reused by content hash) and publishes. `after_scan`: called once the sources are scanned and
    before any file is parsed (tests use it to change the files in between, as an attacker would).
    `within`: folders the roots must still lie in once resolved (the page's and the API's allowed roots:
    a folder swapped for a link out of them after the check is refused here).

    Safe to re-run and to kill: unchanged files are skipped by size and modification time (then by
    content hash), each batch is one transaction, and the new version is published atomically at
    the end. Files that cannot be indexed are listed in the summary with a reason.
    """
    started = time.perf_counter()
    sources = make_sources(settings.ingest, paths, within)
    try:
        return _run(settings.index, settings.embedding, settings.ingest, sources, embedder, progress, on_progress,
                    engine, after_scan, started)
    finally:
        for source in sources:
            source.close()


def _run(index: IndexSettings, embedding_settings: EmbeddingSettings, job: IngestSettings, sources: list[Source],
         embedder: Embedder | None, progress: bool | None, on_progress: ProgressCallback | None, engine: EngineName,
         after_scan: Callable[[], None] | None, started: float) -> IngestSummary:
    if engine == "ray" and any(s.kind != "folder" for s in sources):
        raise ValueError("--engine ray reads folders only (its parsers open files on their own hosts): index web "
                         "sites with the local engine")
    # a concrete backend for the engine's own embedders too (Ray's actors, on other CPUs): auto keeps the
    # index's kind of vectors; a caller's embedder sets the kind
    if embedder is None:
        embedding = resolve_backend(embedding_settings, recorded_model_id(index))
        embedder = make_embedder(embedding)  # lazy: the Ray engine never loads it here
    else:
        embedding = resolve_backend(replace(embedding_settings, backend="auto"), embedder.model_id)
    analyzer().warm_up_in_background()  # the language model loads while the sources are scanned and parsed
    with IndexWriter.open(index, embedder.model_id, switch=True) as writer:

        def report(state: IngestProgress) -> None:
            writer.report_progress(state.phase, state.files_seen, state.files_done, state.chunks)
            if on_progress is not None:
                on_progress(state)

        reembedded = reembed(writer, embedder, job.commit_chunks, report) if writer.switching else 0
        excluded = [e.path for e in writer.exclusions()]
        live = writer.live_documents()
        found_by: dict[str, Source] = {}  # what each source's scan found, and what it could not read
        failed_by: dict[str, Source] = {}

        def scanned() -> Iterator[FoundFile | Skipped]:
            for source in sources:
                for item in source.scan(live):
                    if isinstance(item, FoundFile):
                        found_by[item.path] = source
                    elif item.is_failure:
                        failed_by[display_path(item.path)] = source
                    yield item

        plan = plan_changes(scanned(), lambda key: any(s.owns(key) for s in sources), live, excluded,
                            lambda key: found_by[key].groups_for(key), job.max_file_mb, report)
        summary = plan.summary
        summary.chunks_reembedded = reembedded
        bar = Progress(summary.files_seen, progress, report)
        committer = Committer(writer, embedder, summary, bar, job.commit_chunks, job.publish_interval_s)
        try:
            for change in plan.group_changes:
                committer.set_groups(change.doc_id, change.groups)
            committer.remove(plan.stale)
            if after_scan is not None:
                after_scan()
            bar.update(files=summary.files_unchanged)
            if plan.parse:
                planned = {p.task.path: p for p in plan.parse}
                config = worker_config(job, embedding_settings)
                with make_engine(engine, config, job, embedding, embedder) as parser:
                    committer.use(parser.embedder, parser.commit_chunks)
                    for item in parser.parse([p.task for p in plan.parse]):
                        if item is None:  # the engine waits on slow files (a long scan): commit the parsed
                            committer.flush()  # ones now, so they need not wait for a full batch behind it
                            continue
                        task, outcome = item
                        committer.add(planned[task.path], outcome)
                    committer.flush()
        finally:
            bar.close()
        for source in sources:
            summary.files_failed.extend(FailedFile(display_path(path), error) for path, error in source.problems())
            summary.files_admins_only += source.nobody
        dim = committer.dim
        if dim is None and writer.published is None:
            dim = embedder.dim  # a first run that added nothing still publishes an empty index
        report(IngestProgress("publishing", summary.files_seen, summary.files_seen, summary.chunks_added))
        writer.record_sources([source_record(s, summary, found_by, failed_by) for s in sources])
        published = writer.publish(dim)
        summary.vectors_total = published.vectors_total
        summary.version = published.version
    summary.seconds = time.perf_counter() - started
    return summary


def source_record(source: Source, summary: IngestSummary, found_by: dict[str, Source],
                  failed_by: dict[str, Source]) -> SourceRecord:
    """What `rag sources` shows of a source after this run: the items its scan found (those it could not read
    included), and its failures (the first few)."""
    def whose(path: str) -> bool:
        owner = found_by.get(path) or failed_by.get(path)
        return owner is source if owner is not None else source.owns(path)

    mine = [f for f in summary.files_failed if whose(f.path)]
    found = sum(1 for s in found_by.values() if s is source) + sum(1 for s in failed_by.values() if s is source)
    return SourceRecord(kind=source.kind, name=source.name, last_sync=time.time(), items=found, failed=len(mine),
                        errors=tuple(f"{f.path}: {f.error}" for f in mine[:5]))


def reembed(writer: IndexWriter, embedder: Embedder, batch_chunks: int, report: ProgressCallback) -> int:
    """Embed every stored document again in `embedder`'s kind of vectors (a switch of backend, e.g. fp32
    to int8), a transaction per batch: a killed switch resumes where it stopped. Chunks embedded."""
    total = 0
    while True:
        documents, embedded = writer.reembed_batch(embedder, batch_chunks)
        if not documents:
            return total
        total += embedded
        report(IngestProgress("re-embedding", 0, 0, total))


def worker_config(settings: IngestSettings, embedding: EmbeddingSettings) -> WorkerConfig:
    """What every parser process is told: the chunking model, the limits and the OCR engine."""
    from ingest.ocr import choose_ocr

    model_folder = resolve_embedding_folder(embedding)
    ocr, choice = settings.ocr, choose_ocr(settings.ocr)
    if choice.reason and choice.engine != "none":
        log.warning("%s", choice.reason)
    return WorkerConfig(
        model_folder=str(model_folder), chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        max_tokens=model_max_tokens(model_folder) - 2,  # [CLS] and [SEP]
        max_file_bytes=int(settings.max_file_mb * 2**20), memory_bytes=settings.parse_memory_mb * 2**20,
        zip_max_uncompressed=int(settings.zip_max_uncompressed_mb * 2**20),
        zip_max_ratio=settings.zip_max_ratio,
        ocr_engine=choice.engine, ocr_languages=choice.languages, ocr_tessdata_dir=choice.tessdata_dir,
        ocr_off_reason=choice.reason, ocr_dpi=ocr.dpi, ocr_page_timeout_s=ocr.page_timeout_s,
        ocr_file_timeout_s=ocr.file_timeout_s, ocr_max_pixels=ocr.max_pixels,
    )


@dataclass
class RemovalSummary:
    """What `remove_paths` took out of the index."""

    documents_removed: int = 0
    chunks_removed: int = 0
    version: int = 0


def documents_under(live: dict[bytes, StoredDocument], paths: list[str]) -> list[StoredDocument]:
    """The documents of `live` at or under `paths` (as stored: folders, files, or a site's addresses): what a
    removal of `paths` takes."""
    return [doc for key, doc in live.items() if is_under(os.fsdecode(key), paths)]


def remove_paths(settings: IndexSettings, paths: list[str], model_id: str, by: str = "") -> RemovalSummary:
    """Take the documents at or under `paths` (as stored) out of the index, publishing a new version.

    The files themselves are untouched; the removal sticks: later ingest runs leave these paths out
    until `restore_paths` undoes it (a scheduled run must not bring back what an admin removed).
    """
    summary = RemovalSummary()
    with IndexWriter.open(settings, model_id) as writer:
        writer.exclude(paths, by)
        doomed = [doc.doc_id for doc in documents_under(writer.live_documents(), paths)]
        if doomed:
            summary.documents_removed = len(doomed)
            summary.chunks_removed = writer.remove(doomed)
        summary.version = writer.publish(None).version
    return summary


def restore_paths(settings: IndexSettings, paths: list[str], model_id: str) -> int:
    """Undo removals: the next ingest of a folder holding these paths indexes them again. How many
    removals were undone."""
    with IndexWriter.open(settings, model_id) as writer:
        return writer.include(paths)
