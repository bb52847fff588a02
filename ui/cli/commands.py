"""The `rag` command line: ingest, search, sources, status, ask, check, serve-llm, eval, doctor, ui, api, user and token (run
`rag --help` for each one's line)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from rag.settings import PageSettings, Settings, load_settings
from rag.text import printable
from rag.types import page_unit

if TYPE_CHECKING:
    from ingest.job import IngestSummary
    from rag.types import Accounts, Hit
    from ui.appdb import AppDB
    from rag.types import Principal

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Private question answering over your organization's documents.")

ConfigOption = Annotated[Optional[Path], typer.Option("--config", metavar="FILE", help="TOML settings file.",
                                                      envvar="RAG_CONFIG")]
IndexOption = Annotated[Optional[Path], typer.Option("--index", metavar="DIR", help="Index folder (default: $RAG_INDEX_DIR, else data/index).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
GroupsOption = Annotated[Optional[list[str]], typer.Option(
    "--as-group", metavar="GROUP", help="Answer as a user in this group (repeat for several); default: as an admin, who reads all.")]
UserOption = Annotated[Optional[str], typer.Option(
    "--as-user", metavar="USER", help="Answer as this signed-in user (with --as-group: in those groups); documents "
    "indexed with RAG_ACL_SOURCE=filesystem are read as the account of this name may read them.")]


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Mode(str, Enum):
    dense = "dense"
    keyword = "keyword"
    hybrid = "hybrid"


class Scope(str, Enum):
    read = "read"
    admin = "admin"
    ingest = "ingest"


def _principal(groups: list[str] | None, user: str | None = None,
               accounts: "Accounts | None" = None) -> "Principal | None":
    """A user (`user`, signed in, their account from `accounts`) in `groups`, or None: the operator at the
    command line reads everything, as an admin."""
    from rag.types import Accounts, Principal

    if user:
        return Principal.signed_in(user, groups or [], accounts or Accounts())
    return Principal.member_of(groups) if groups else None


def _setup(ctx: typer.Context, config: Path | None, level: int = logging.WARNING, **overrides: object) -> Settings:
    """The settings, built once for the command; log lines at `level` and above (INFO with -v)."""
    from ui.logs import configure_logging

    if isinstance(ctx.obj, CliOptions) and ctx.obj.verbose:
        level = min(level, logging.INFO)
    configure_logging(level=level)
    try:
        settings = load_settings(config, **overrides)
    except ValueError as exc:
        _fail(f"invalid configuration: {exc}")
    configure_logging(settings.log_format, level)
    return settings


@dataclass(frozen=True)
class CliOptions:
    """The options every command shares (given before or after the command's name)."""

    verbose: bool = False


def _help_without_command(ctx: typer.Context) -> None:
    """`rag` or `rag user` alone: the help, on stdout, exit 0 (not a usage error)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def command_group(name: str, help: str) -> typer.Typer:
    """`rag NAME ...`: a group of commands, which alone shows its help (`_help_without_command`)."""
    group = typer.Typer(help=help, rich_markup_mode=None)
    group.callback(invoke_without_command=True)(_help_without_command)
    app.add_typer(group, name=name)
    return group


@app.callback(invoke_without_command=True)
def _options(ctx: typer.Context,
             verbose: Annotated[bool, typer.Option("-v", "--verbose",
                                                   help="Show progress log lines (INFO), not only warnings.")] = False
             ) -> None:
    ctx.obj = CliOptions(verbose=verbose)  # inherited by the command's own context
    _help_without_command(ctx)


def _fail(message: str, code: int = 2) -> "typer.Exit":
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _guarded() -> Iterator[None]:
    """Turn expected errors into a one-line message and exit code 2 (no stack trace)."""
    from rag.index import IndexNotFoundError, RagIndexError
    from rag.settings import ConfigError
    from ui.appdb import AppDBError

    try:
        yield
    except IndexNotFoundError as exc:
        from ui.cli.doctor import missing_index_advice

        _fail(f"{exc}; {missing_index_advice(exc.folder)}")
    except (RagIndexError, ConfigError, FileNotFoundError, ValueError, AppDBError) as exc:
        _fail(str(exc))


def _guard(fn):  # type: ignore[no-untyped-def]
    """`fn` with `_guarded` around each call."""

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        with _guarded():
            return fn(*args, **kwargs)

    return wrapper


@app.command()
def ingest(
    ctx: typer.Context,
    targets: Annotated[list[str] | None, typer.Argument(metavar="FOLDER|URL", hidden=True)] = None,
    index: IndexOption = None,
    json_out: JsonOption = False,
    every: Annotated[float, typer.Option("--every", min=0, metavar="SECONDS",
                                         help="Re-run every N seconds (0: once).")] = 0,
    watch: Annotated[bool, typer.Option("--watch", help="Run until stopped: changes are searchable seconds after "
                                        "they happen (file-system events, and a rescan every RAG_WATCH_RESCAN_S)."
                                        )] = False,
    engine: Annotated[Engine, typer.Option("--engine", metavar="ENGINE", help="local, or ray (parse and embed on a Ray cluster: "
                                        "RAY_ADDRESS, else a local Ray).")] = Engine.local,
    config: ConfigOption = None,
) -> None:
    """Index document folders and intranet sites (incremental; safe to re-run and to interrupt).

    Indexes the documents in each FOLDER (and below), the pages of each site at URL (an http:// or https://
    address: crawled within its path) and the messages of each mailbox at URL (imaps://host/Mailbox,
    maildir:/path, mbox:/path), as RAG_SOURCES_FILE configures them, into the index folder; unchanged files,
    pages and messages are skipped. Without FOLDER or URL: every site and mailbox RAG_SOURCES_FILE declares
    (the compose `crawl` service)."""
    import time

    from ingest.job import run_ingest
    from ingest.mail import is_mailbox
    from ingest.sources import is_url

    # a scheduled run is a service: its log lines say what each run did
    settings = _setup(ctx, config, logging.INFO if every or watch else logging.WARNING, index_dir=index)
    if not targets:
        from ingest.mail import load_mailboxes
        from ingest.web import load_sites

        targets = [site.url for site in _guard(load_sites)(settings.ingest)] + \
            [box.url for box in _guard(load_mailboxes)(settings.ingest)]
        if not targets:
            _fail("missing FOLDER or URL: give the folders or site addresses to index, or declare sites in "
                  "RAG_SOURCES_FILE (rag ingest --help)")
    remote = [t for t in targets if is_url(t) or is_mailbox(t)]  # addresses stay strings; the rest are folders
    paths: list[Path | str] = [t if t in remote else Path(t) for t in targets]
    if watch:
        if every or engine != Engine.local:
            _fail("--watch runs until stopped with the local engine: leave out --every and --engine")
        if remote:
            _fail("--watch follows folders: re-read a site or a mailbox with --every SECONDS")
        _watch(settings, [Path(t) for t in targets], json_out)
        return
    if not every:
        _print_summary(_guard(run_ingest)(settings, paths, engine=engine.value), json_out)
        return
    from rag.embedding import make_embedder, resolve_backend
    from rag.index import recorded_model_id

    # loaded once for every run
    embedder = make_embedder(resolve_backend(settings.embedding, recorded_model_id(settings.index)))
    while True:  # the scheduled job of a deployment: a failed run is reported, the next one still comes
        try:
            _print_summary(_guard(run_ingest)(settings, paths, embedder=embedder, engine=engine.value), json_out)
        except typer.Exit:
            pass  # the one-line reason is printed; a busy index or a missing folder may be fine next time
        time.sleep(every)


def _watch(settings: "Settings", paths: list[Path], json_out: bool) -> None:
    """`rag ingest --watch`: batches of changes until SIGTERM or Ctrl-C (the batch in flight is finished or,
    killed, leaves the last published version)."""
    import signal
    import threading

    from ingest.job import run_ingest
    from ingest.watch import Watcher
    from rag.embedding import make_embedder, resolve_backend
    from rag.index import recorded_model_id

    embedder = make_embedder(resolve_backend(settings.embedding, recorded_model_id(settings.index)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with _guarded():
        watcher = Watcher(settings.ingest, settings.index_dir, paths,
                          lambda roots: run_ingest(settings, roots, embedder=embedder, progress=False),
                          on_summary=lambda s: _print_summary(s, json_out))
    typer.echo(f"watching {', '.join(map(str, watcher.roots))} (Ctrl-C stops)", err=True)
    try:
        watcher.run(stop)
    except KeyboardInterrupt:
        pass


def _print_summary(summary: "IngestSummary", json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
        return
    typer.echo(
        f"{summary.files_seen} files seen: {summary.files_indexed} indexed, {summary.files_unchanged} unchanged, "
        f"{summary.files_removed} removed, {len(summary.files_failed)} failed, {summary.files_skipped} skipped; "
        f"+{summary.chunks_added}/-{summary.chunks_removed} chunks, {summary.vectors_total} vectors, "
        f"version {summary.version}, {summary.seconds:.1f} s"
        + (f"; {summary.pages_ocr} pages read by OCR" if summary.pages_ocr else "")
    )
    if summary.files_reparsed:  # an index of an earlier release, brought up to date
        typer.echo(f"  {summary.files_reparsed} files read again by this release's parsers: "
                   f"{summary.chunks_embedded} of {summary.chunks_added} chunks embedded, the others' text "
                   f"unchanged and their vectors kept")
    for failed in summary.files_failed:
        typer.echo(printable(f"  failed: {failed.path}: {failed.error}"))
    for part in summary.parts_unread:
        typer.echo(printable(f"  partly read: {part.path}: {part.error}"))
    by_reason: dict[str, list[str]] = {}
    for skipped in summary.nothing_to_index:
        by_reason.setdefault(skipped.error, []).append(skipped.path)
    for reason, paths in by_reason.items():  # no fault, so a line per reason, not per file
        more = f" and {len(paths) - 3} more (--json lists them)" if len(paths) > 3 else ""
        typer.echo(printable(f"  skipped {len(paths)}, nothing to index, {reason}: {', '.join(paths[:3])}{more}"))


def _inputs(text: str | None, file: Path | None, what: str) -> list[str]:
    """The one text given on the command line, or the non-empty lines of --queries FILE, in order."""
    if (text is None) == (file is None):
        _fail(f"give either a {what} or --queries FILE")
    if file is None:
        return [text or ""]
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")
    return [line.strip() for line in lines if line.strip()]


def _hit_dict(hit: "Hit") -> dict[str, object]:
    return {**hit.metadata(), "text": hit.text}


def _where(path: str, page: int | None) -> str:
    """`path, slide 4`: the unit the format has (page, slide, sheet)."""
    return printable(path + (f", {page_unit(path)} {page}" if page is not None else ""))


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[Optional[str], typer.Argument(metavar="QUERY", hidden=True)] = None,
    queries: Annotated[Optional[Path], typer.Option("--queries", metavar="FILE",
                                                    help="File with one query per line.")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, metavar="N", help="Chunks to return.")] = 5,
    mode: Annotated[Optional[Mode], typer.Option("--mode", metavar="MODE", help="dense, keyword or hybrid (default: "
                                                "$RAG_SEARCH_MODE, else hybrid); keyword loads no model.")] = None,
    by_score: Annotated[bool, typer.Option("--by-score", help="chunks strictly by score, several of one page "
                                           "together (default: each page's best chunk first, $RAG_DISTINCT_PAGES).")] = False,
    index: IndexOption = None,
    json_out: JsonOption = False,
    as_group: GroupsOption = None,
    as_user: UserOption = None,
    config: ConfigOption = None,
) -> None:
    """Find the chunks that best match a query (or each line of --queries).

    Prints the best chunks for QUERY, best first, with their file and page (slide, sheet)."""
    from rag.search import build_searcher

    texts = _inputs(query, queries, "query")
    settings = _setup(ctx, config, index_dir=index, search_mode=mode.value if mode else None,
                      distinct_pages=False if by_score else None)
    searcher = build_searcher(settings)
    _guard(searcher.warm_up)(settings.search.mode)
    results = []
    for start in range(0, len(texts), 64):
        results.extend(_guard(searcher.search_batch)(texts[start:start + 64], k, None, _principal(as_group, as_user, settings.page.accounts)))
    for result in results:
        if json_out:
            typer.echo(json.dumps({"query": result.query, "hits": [_hit_dict(h) for h in result.hits],
                                   "timings_ms": result.timings_ms}, ensure_ascii=False))
            continue
        typer.echo(f"# {result.query}  ({result.timings_ms.get('total', 0):.1f} ms)")
        for rank, hit in enumerate(result.hits, start=1):
            snippet = " ".join(hit.text.split())[:200]
            typer.echo(f"{rank}. [{hit.score:.3f}] {_where(hit.path, hit.page)}\n   {printable(snippet)}")


@app.command()
def sources(ctx: typer.Context, index: IndexOption = None, json_out: JsonOption = False,
            config: ConfigOption = None) -> None:
    """List the sources the index was built from (folders, sites): last sync, items found, failures."""
    import datetime
    from dataclasses import asdict

    from rag.index import IndexReader

    settings = _setup(ctx, config, index_dir=index)
    reader = IndexReader(settings.index)
    _guard(reader.refresh)()
    assert reader.view is not None
    records = reader.view.sources()
    if json_out:
        typer.echo(json.dumps([asdict(r) for r in records], ensure_ascii=False))
        return
    if not records:
        typer.echo("no source recorded yet (sources are registered by their first `rag ingest` of this release)")
    for r in records:
        synced = datetime.datetime.fromtimestamp(r.last_sync).isoformat(sep=" ", timespec="seconds")
        typer.echo(f"{r.kind} {printable(r.name)}: last sync {synced}, {r.items} found, {r.failed} failed")
        for error in r.errors:
            typer.echo(f"   {printable(error)}")


@app.command()
def status(ctx: typer.Context, index: IndexOption = None, json_out: JsonOption = False, config: ConfigOption = None) -> None:
    """Show what the index holds, which model built it, and what a running ingest has not published yet."""
    from rag.index import IndexNotFoundError, IndexReader, index_state, recorded_model_id

    settings = _setup(ctx, config, index_dir=index)
    state = index_state(settings.index)
    reader = IndexReader(settings.index)
    try:
        reader.refresh()
    except IndexNotFoundError:
        if state is None:
            _guard(reader.refresh)()  # the one-line advice ("no index in ...: build one with ..."), exit 2
        # a first run that has not published yet: nothing searchable, but not nothing going on
        data: dict[str, object] = {"documents": 0, "chunks": 0, "vectors": 0, "ocr_pages": 0,
                                   "embedding_model": recorded_model_id(settings.index), "version": 0}
    else:
        assert reader.view is not None
        data = reader.view.status()
        del data["published_at"]
    data["index_dir"] = str(settings.index_dir)
    if state is not None:
        data.update(state.fields())
    from ingest.watch import WatchState

    watching = WatchState.read(settings.index_dir)
    if watching is not None:
        data["watcher"] = watching.fields()
    if json_out:
        typer.echo(json.dumps(data))
        return
    for key, value in data.items():
        if key == "languages":  # chunks per language, as the keyword index analyses them
            value = ", ".join(f"{lang or 'not recognised'} {n}" for lang, n in value.items()) or "-"  # type: ignore[union-attr]
        if not key.startswith("run_") and key not in ("running", "watcher"):
            typer.echo(f"{key}: {value}")
    note = state.describe() if state is not None else ""
    if note:
        typer.echo(note)
    if watching is not None:
        typer.echo(watching.describe())


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[Optional[str], typer.Argument(metavar="QUESTION", hidden=True)] = None,
    queries: Annotated[Optional[Path], typer.Option("--queries", metavar="FILE",
                                                    help="File with one question per line.")] = None,
    index: IndexOption = None,
    json_out: JsonOption = False,
    as_group: GroupsOption = None,
    as_user: UserOption = None,
    config: ConfigOption = None,
) -> None:
    """Answer a question from the indexed documents with the local model, citing its sources.

    Answers QUESTION; sentences no passage supports are listed with the reason."""
    from rag.generation import GeneratorBusyError
    from rag.qa import Answer, build_service

    questions = _inputs(question, queries, "question")
    settings = _setup(ctx, config, index_dir=index)
    with _guarded():
        service = build_service(settings)
        service.warm_up()
    for text in questions:
        answer = None
        streamed = ""
        # guarded while streaming too: a bad prompt budget surfaces mid-answer, not at the call
        with _guarded():
            try:
                for item in service.ask_stream(text, principal=_principal(as_group, as_user, settings.page.accounts)):
                    if isinstance(item, Answer):
                        answer = item
                    elif isinstance(item, str) and not json_out:
                        streamed += item
                        typer.echo(printable(item, keep_lines=True), nl=False)
            except GeneratorBusyError as exc:
                _fail(str(exc), code=3)
        assert answer is not None
        if json_out:
            typer.echo(json.dumps(answer.to_dict(), ensure_ascii=False))
            continue
        typer.echo("")
        if streamed.strip() != answer.answer.strip():  # a quote replaces the model's text printed above
            typer.echo(printable(answer.answer, keep_lines=True))
        if answer.note:
            typer.echo(f"  note: {answer.note}")
        for source in answer.sources:
            section = printable(f" · {source.section}") if source.section else ""
            typer.echo(f"  [{source.number}]{'*' if source.cited else ' '} {_where(source.path, source.page)}{section}")
        for s in answer.support:
            if not s.supported:
                typer.echo(printable(f"  not supported by the passages: \"{s.sentence}\" ({s.reason})"))


@app.command()
def check(
    ctx: typer.Context,
    statement: Annotated[Optional[str], typer.Argument(metavar="STATEMENT", hidden=True)] = None,
    statements: Annotated[Optional[Path], typer.Option("--statements", metavar="FILE",
                                                       help="File with one statement per line.")] = None,
    index: IndexOption = None,
    json_out: JsonOption = False,
    as_group: GroupsOption = None,
    as_user: UserOption = None,
    config: ConfigOption = None,
) -> None:
    """Check a statement against the indexed documents, sentence by sentence (no model is run).

    Says for each sentence of STATEMENT whether a passage supports it, and which."""
    from rag.embedding.base import embedding_languages
    from rag.qa import QAService
    from rag.search import build_searcher

    texts = _inputs(statement, statements, "statement")
    settings = _setup(ctx, config, index_dir=index)
    with _guarded():
        searcher = build_searcher(settings)
        searcher.warm_up()
        service = QAService(searcher, None, settings.answers,  # type: ignore[arg-type]  # checking runs no generator
                            embedding_languages=embedding_languages(settings.embedding))
        results = service.check_statements(texts, _principal(as_group, as_user, settings.page.accounts))
    for result in results:
        sentences = []
        for s in result.sentences:
            src = result.source_of(s)
            sentences.append({"sentence": s.sentence, "supported": s.supported, "evidence": s.evidence,
                              "source": {"path": src.path, "title": src.title, "page": src.page,
                                         "unit": page_unit(src.path)} if src else None,
                              "reason": s.reason})
        if json_out:
            typer.echo(json.dumps({"statement": result.statement, "sentences": sentences}, ensure_ascii=False))
            continue
        for s in sentences:
            mark = "supported" if s["supported"] else "NOT supported"
            typer.echo(printable(f"{mark}: {s['sentence']}"))
            if s["supported"] and s["source"]:
                source = s["source"]
                typer.echo(printable(f"  evidence: \"{s['evidence']}\"") + f" ({_where(source['path'], source['page'])})")
            elif s["reason"]:
                typer.echo(printable(f"  why: {s['reason']}"))


@app.command("serve-llm")
def serve_llm(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, metavar="N", help="Port (0 picks a free one).")] = 8001,
    config: ConfigOption = None,
) -> None:
    """Serve the local generator on an OpenAI-compatible /v1/completions endpoint."""
    from rag.generation import make_generator
    from rag.generation.server import serve

    settings = _setup(ctx, config, logging.INFO)  # a server: its access lines are the record
    generator = _guard(make_generator)(settings.generation, "transformers")  # this is the server an HTTP backend calls
    _guard(serve)(generator, host, port, settings.llm_server_token, settings.generation_timeout_s)


@app.command("eval")
def eval_(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Argument(metavar="DATASET", hidden=True)],
    index: IndexOption = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, metavar="N", help="Use the first N questions.")] = None,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", metavar="DIR",
                                                    help="Keep the index here (reused when present).")] = None,
    answers: Annotated[int, typer.Option("--answers", min=0, metavar="N",
                                         help="Also answer the first N questions.")] = 0,
    questions: Annotated[Optional[Path], typer.Option(
        "--questions", metavar="FILE", help="With a folder of documents: its questions, one JSON line each "
        '({"question", "answer", "path", "page"?, "answerable"?}, paths relative to the folder).')] = None,
    no_answers: Annotated[bool, typer.Option("--no-answers", help="With --questions: search only.")] = False,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Measure retrieval (and answers) on a QA dataset, indexed into a temporary index.

    DATASET is a folder with corpus.jsonl and queries.jsonl, a golden questions file
    (samples/questions.jsonl), or a folder of documents with --questions FILE: the folder is indexed
    (into --index, kept and updated incrementally, or a temporary index) and the report gives the right
    page in the top 5, the expected fact in the answer, refusals and abstentions."""
    from ingest.datasets import run_eval, run_folder_questions, run_questions

    settings = _setup(ctx, config, index_dir=index)
    if questions is not None:
        if not dataset.is_dir():
            _fail(f"{dataset} is not a folder: --questions measures a folder of documents")
        report = _guard(run_folder_questions)(settings, dataset, questions, index, not no_answers, limit)
        if json_out:
            typer.echo(json.dumps(report))
            return
        typer.echo(f"{dataset}: {report['documents']} documents, {report['chunks']} chunks "
                   f"(ingest {report['ingest_seconds']} s), {report['questions']} questions")
        for key in ("page_top5", "fact_in_answer", "fact_in_passages", "refused_answerable",
                    "abstained_unanswerable"):
            if key in report:
                figure = report[key]
                typer.echo(f"  {key:24s} {figure['hits']}/{figure['of']} ({figure['share']:.2f})")  # type: ignore[index]
        return
    if dataset.is_file():
        golden = _guard(run_questions)(settings, dataset, index)
        if json_out:
            typer.echo(json.dumps(golden))
            return
        for key, value in golden.items():
            typer.echo(f"{key}: {value}")
        return
    report = _guard(run_eval)(settings, dataset, limit, workdir, answers)
    if json_out:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"{report['dataset']}: {report['documents']} documents, {report['chunks']} chunks, "
               f"{report['queries']} questions")
    for mode, figures in report["retrieval"].items():  # type: ignore[union-attr]
        typer.echo(f"  {mode:8s} " + "  ".join(f"{k} {v}" for k, v in figures.items()))
    if "answers" in report:
        typer.echo("  answers  " + "  ".join(f"{k} {v}" for k, v in report["answers"].items()))  # type: ignore[union-attr]


# Security options passed on the command line as well as in .streamlit/config.toml, so they hold
# whatever folder `rag ui` is started from.
STREAMLIT_FLAGS = (
    "--browser.gatherUsageStats=false", "--server.enableXsrfProtection=true", "--server.enableCORS=true",
    "--server.enableStaticServing=false", "--server.maxUploadSize=16", "--server.maxMessageSize=64",
    "--server.headless=true", "--server.fileWatcherType=none", "--server.runOnSave=false",
    "--global.developmentMode=false", "--client.toolbarMode=viewer", "--client.showErrorDetails=none",
    "--theme.base=light",
)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(settings: PageSettings, host: str, multi_user: bool) -> list[str]:
    """The Host names the page's websocket accepts (Streamlit's server.allowedHosts): DNS rebinding, a
    web page that points its own name at this server, is refused. Single-user: loopback names only."""
    if not multi_user:
        return list(LOOPBACK_NAMES)
    if settings.allowed_hosts:
        return list(settings.allowed_hosts)
    import socket

    names = {socket.gethostname(), socket.getfqdn(), *LOOPBACK_NAMES}
    if host not in ("0.0.0.0", "::"):
        names.add(host)
    typer.echo(f"warning: RAG_UI_ALLOWED_HOSTS is not set; the page answers only at {', '.join(sorted(names))} "
               "(set it to the names staff use, e.g. '[\"qa.example.org\"]')", err=True)
    return sorted(names)


HostOption = Annotated[Optional[str], typer.Option(
    "--host", metavar="ADDRESS", help="Address to bind; 127.0.0.1 unless users or single sign-on are configured.")]


def _bind_address(page: PageSettings, host: str | None, what: str) -> tuple[str, bool]:
    """(the address to bind, multi-user?): every interface with users, else loopback only (single-user
    mode makes whoever connects an admin). A broken users file fails here, not at the first sign-in."""
    from rag.network import is_loopback

    if page.users_file:
        from ui.auth import load_users

        _guard(load_users)(page.users_file)
    multi_user = bool(page.users_file) or page.oidc
    host = host or ("0.0.0.0" if multi_user else "127.0.0.1")
    if not multi_user and not is_loopback(host):
        _fail(f"without users {what} is single-user and binds to 127.0.0.1 only (asked for {host}): "
              f"configure RAG_UI_USERS_FILE (see `rag user add`) or RAG_UI_OIDC")
    return host, multi_user


@app.command()
def ui(
    ctx: typer.Context,
    index: IndexOption = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, metavar="N", help="Port to serve the page on.")] = 8501,
    host: HostOption = None,
    config: ConfigOption = None,
) -> None:
    """Start the web page (Streamlit): staff ask, admins index."""
    import os

    settings = _setup(ctx, config, logging.INFO, index_dir=index)
    page = settings.page
    host, multi_user = _bind_address(page, host, "the page")
    typer.echo(f"{'multi-user' if multi_user else 'single-user mode'}: http://{host}:{port}", err=True)
    script = Path(__file__).parents[1] / "web" / "app.py"
    hosts = [f"--server.allowedHosts={name}" for name in allowed_hosts(page, host, multi_user)]
    command = [sys.executable, "-m", "streamlit", "run", str(script), f"--server.address={host}",
               f"--server.port={port}", *STREAMLIT_FLAGS, *hosts, "--"]
    if config:
        command += ["--config", str(config)]
    if index:
        command += ["--index", str(index)]
    sys.stdout.flush()
    sys.stderr.flush()
    # replaced, not spawned: a service manager's (or a test's) signal reaches the server itself
    os.execve(sys.executable, command, {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})


@app.command()
def api(
    ctx: typer.Context,
    index: IndexOption = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, metavar="N", help="Port to serve on (0: any free one).")] = 8000,
    host: HostOption = None,
    config: ConfigOption = None,
) -> None:
    """Start the HTTP API (JSON under /v1, OpenAI-compatible chat, docs at /docs)."""
    import socket

    import uvicorn

    from ui.api.app import build_state, create_app

    settings = _setup(ctx, config, logging.INFO, index_dir=index)
    host, multi_user = _bind_address(settings.page, host, "the API")
    with _guarded():
        state = build_state(settings)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # inherited by every accepted connection: without it a keep-alive client (httpx, OpenAI's) waited
    # 40 ms per request on delayed acknowledgements (bench/load_test.py --target api)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)  # from now on connections wait in the backlog until the server accepts them
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    # one line on stdout, then serve: scripts (and tests) read the address from it
    typer.echo(f"serving the API on http://{shown}:{bound} ({'multi-user' if multi_user else 'single-user mode'})")
    sys.stdout.flush()
    proxies = list(settings.api.trusted_proxies)
    server = uvicorn.Server(uvicorn.Config(
        create_app(state), log_config=None, access_log=True, server_header=False, date_header=False,
        proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) or None, timeout_graceful_shutdown=5))
    server.run(sockets=[sock])


@app.command()
def backup(
    ctx: typer.Context,
    dest: Annotated[Path, typer.Argument(metavar="DEST", help="A new folder for the backup.")],
    index: IndexOption = None,
    no_app_db: Annotated[bool, typer.Option("--no-app-db", help="Leave the app database out.")] = False,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Back up the newest published index version and the app database (conversations, tokens, audit) into a
    new folder, consistently, while the service runs; each file listed with its checksum."""
    from rag.backup import BackupError, take_backup
    from ui.appdb import AppDB

    settings = _setup(ctx, config, index_dir=index)
    app_db: Path | Callable[[Path], None] | None = None
    label = ""
    if not no_app_db and settings.audit.shared:
        shared = _app_db(settings)
        label = str(shared)

        def snapshot(target: Path) -> None:  # a SQLite copy of one consistent snapshot of the shared database
            copy = AppDB(target)
            try:
                shared.copy_into(copy)
            finally:
                copy.close()

        app_db = snapshot
    elif not no_app_db and isinstance(settings.audit.app_db, Path) and settings.audit.app_db.is_file():
        app_db = settings.audit.app_db
    # else: no app database yet (nobody has used the page or the API): the index alone
    try:
        manifest = take_backup(settings.index_dir, app_db, dest, label)
    except (BackupError, OSError, sqlite3.Error, ValueError) as exc:
        _fail(str(exc))
    size = sum(f.size for f in manifest.files)
    if json_out:
        typer.echo(json.dumps({"backup": str(dest), "index_version": manifest.index_version,
                               "app_db": manifest.app_db, "files": len(manifest.files), "bytes": size}))
    else:
        typer.echo(f"backed up index version {manifest.index_version}" + (" and the app database" if manifest.app_db
                   else "") + f" to {dest} ({len(manifest.files)} files, {size / 1e6:.1f} MB)")


@app.command()
def restore(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(metavar="SRC", help="A folder `rag backup` wrote.")],
    index: IndexOption = None,
    app_db: Annotated[Optional[str], typer.Option("--app-db", metavar="FILE|URL", help="Where to restore the app "
                                                  "database (default: $RAG_APP_DB): a new file, or an empty "
                                                  "PostgreSQL database.")] = None,
    config: ConfigOption = None,
) -> None:
    """Verify a backup (every file against its checksum), then install it into a new or empty index folder and
    a new app database file or an empty PostgreSQL database."""
    import tempfile

    from rag import pg
    from rag.backup import BackupError
    from rag.backup import restore as restore_backup
    from ui.appdb import AppDB

    settings = _setup(ctx, config, index_dir=index)
    target: Path | str = app_db if app_db and pg.is_url(app_db) else Path(app_db) if app_db else settings.audit.app_db
    try:
        if isinstance(target, str):  # into PostgreSQL: the backup's SQLite copy, then its rows
            shared = _app_db(settings, target)
            if any(shared.counts().values()):
                _fail(f"{shared} already holds rows: restore into an empty database")
            with tempfile.TemporaryDirectory(dir=settings.index_dir.parent if settings.index_dir.parent.is_dir()
                                             else None) as scratch:
                copy_path = Path(scratch) / "app.sqlite"
                manifest = restore_backup(source, settings.index_dir, copy_path)
                if manifest.app_db:
                    copy = AppDB(copy_path)
                    try:
                        copy.copy_into(shared)
                    finally:
                        copy.close()
            where = str(shared)
        else:
            manifest = restore_backup(source, settings.index_dir, target)
            where = str(target)
    except (BackupError, OSError, sqlite3.Error, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"restored index version {manifest.index_version} into {settings.index_dir}" +
               (f" and the app database to {where}" if manifest.app_db else ""))


@app.command()
def mcp(
    ctx: typer.Context,
    index: IndexOption = None,
    url: Annotated[Optional[str], typer.Option("--url", metavar="URL", help="Relay to this rag api's /mcp "
                                               "(e.g. https://qa.example.org/api) instead of a local index.")] = None,
    token_file: Annotated[Optional[Path], typer.Option("--token-file", metavar="FILE", help="Read the API token "
                                                       "from this file (default: $RAG_TOKEN).")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the MCP server over stdio for an agent (desktop assistants, coding agents), as the user of the API
    token in $RAG_TOKEN: on the local index, or with --url on a remote rag api (the desktop holds no index)."""
    import anyio

    from ui.mcp.stdio import TokenRefused, serve_local, serve_remote

    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            _fail(f"cannot read the token file {token_file}: {exc.strerror}")
    else:
        token = os.environ.get("RAG_TOKEN", "").strip()
    if url and not token:
        _fail("no API token: set RAG_TOKEN or --token-file (an admin makes one with `rag token create`)")
    try:
        if url:
            if not url.startswith(("http://", "https://")):
                _fail(f"--url {url!r}: give the API's http:// or https:// address")
            anyio.run(serve_remote, url, token)
        else:
            settings = _setup(ctx, config, logging.WARNING, index_dir=index)
            with _guarded():
                serve_local(settings, token)
    except TokenRefused as exc:
        _fail(str(exc))
    except OSError as exc:  # the remote API cannot be reached
        _fail(f"cannot reach {url}: {exc}")


@app.command()
def doctor(ctx: typer.Context, index: IndexOption = None, json_out: JsonOption = False, config: ConfigOption = None) -> None:
    """Check the installation (models, GPU, index, users, config) and say what to fix; exit 1 on a failure."""
    from dataclasses import asdict

    from ui.cli.doctor import run_checks

    checks = run_checks(_setup(ctx, config, index_dir=index))
    if json_out:
        typer.echo(json.dumps([asdict(c) for c in checks]))
    else:
        for c in checks:
            typer.echo(f"{c.status.upper():4s}  {c.name}: {c.detail}")
    raise typer.Exit(1 if any(c.status == "fail" for c in checks) else 0)


user_app = command_group("user", "Manage the web page's users file.")


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(metavar="USERNAME", hidden=True)],
    users_file: Annotated[Optional[Path], typer.Option("--users-file", metavar="FILE",
                                                       help="Users file (default: $RAG_UI_USERS_FILE).")] = None,
    name: Annotated[str, typer.Option("--name", metavar="TEXT", help="Display name.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
    group: Annotated[Optional[list[str]], typer.Option("--group", metavar="GROUP", help="A group (repeat for several).")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    config: ConfigOption = None,
) -> None:
    """Add or replace a user; only a bcrypt hash of the password is stored.

    USERNAME is the login name; the password is asked for (or read with --password-stdin)."""
    from ui.auth import add_user

    settings = _setup(ctx, config)
    path = users_file or settings.page.users_file
    if path is None:
        _fail("give --users-file or set RAG_UI_USERS_FILE")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        _fail("the password must have at least 8 characters")
    add_user(path, username, password, name, ["user", "admin"] if admin else ["user"], group or [])
    typer.echo(f"{username} saved in {path}")


def main() -> None:
    """Console-script entry point."""
    import os

    os.umask(0o077)  # everything this process writes (index, app database, users file) is private
    args = sys.argv[1:]
    if "--" in args:
        head, tail = args[:args.index("--")], args[args.index("--"):]
    else:
        head, tail = args, []
    # -v works anywhere on the line (`rag search x -v`), not only before the command
    flags = [a for a in head if a in ("-v", "--verbose")]
    args = flags[:1] + [a for a in head if a not in ("-v", "--verbose")] + tail
    try:
        code = app(args, prog_name="rag", standalone_mode=False)
    except typer.BadParameter as exc:
        # one line naming the option and what it accepts: no usage dump, no library wording
        message = exc.format_message().replace("Value error, ", "").rstrip(".")
        command = exc.ctx.command_path if exc.ctx else "rag"
        typer.echo(f"error: {message} (see `{command} --help`)", err=True)
        code = 2
    except typer.TyperException as exc:  # unknown option, missing argument, ...
        command = getattr(getattr(exc, "ctx", None), "command_path", "rag")
        typer.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
        code = 2
    except typer.Abort:
        typer.echo("", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)



index_app = command_group("index", "Copies of an index for readers on other hosts.")


@index_app.command("sync")
def index_sync(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(metavar="SRC", help="The index its writer publishes (a shared or "
                                           "mounted folder).")],
    dest: Annotated[Path, typer.Argument(metavar="DEST", help="This host's copy, which its page and API read.")],
    every: Annotated[int, typer.Option("--every", metavar="SECONDS", min=0, help="Keep syncing, this often "
                                       "(0: once).")] = 0,
    json_out: JsonOption = False,
) -> None:
    """Bring a local copy to the newest published version of an index: copied, verified against its manifest,
    then swapped in; the page and the API reading the copy pick it up at their next question."""
    import time as clock

    from rag.sync import SyncError, sync_index

    while True:
        try:
            report = sync_index(source, dest)
        except SyncError as exc:
            if not every:
                _fail(str(exc))
            typer.echo(f"error: {exc}", err=True)  # a loop keeps serving the last good copy and tries again
        else:
            if json_out:
                typer.echo(json.dumps({"version": report.version, "copied": report.copied, "bytes": report.bytes}))
            elif report.copied:
                typer.echo(f"{dest} now serves version {report.version} ({report.bytes / 1e6:.1f} MB copied)")
            elif not every:
                typer.echo(f"{dest} already serves version {report.version}, the newest")
            sys.stdout.flush()
        if not every:
            return
        clock.sleep(every)


token_app = command_group("token", "Manage the HTTP API's tokens.")


def _app_db(settings: Settings, location: Path | str | None = None) -> "AppDB":
    """The configured app database (or the one at `location`, with the configured password file); a one-line
    message when it cannot be opened."""
    from ui.appdb import AppDB, AppDBError

    audit = settings.audit
    try:
        return AppDB(audit.app_db if location is None else location, audit.retention_days,
                     password_file=audit.password_file, pool_size=2)
    except (AppDBError, ValueError) as exc:
        _fail(str(exc))


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", hidden=True)],
    user: Annotated[str, typer.Option("--user", metavar="USERNAME", help="The user the token acts as.")],
    scope: Annotated[Scope, typer.Option("--scope", help="read (ask, search, documents), admin, or ingest (push "
                                         "documents to /v1/sources/..., never read).")] = Scope.read,
    source: Annotated[Optional[list[str]], typer.Option(
        "--source", metavar="SOURCE", help="An ingest token: a push source it may write (repeat; default any).")] = None,
    expires: Annotated[Optional[float], typer.Option("--expires", metavar="DAYS", min=0.001,
                                                     help="Days until it stops working (default: never).")] = None,
    group: Annotated[Optional[list[str]], typer.Option(
        "--group", metavar="GROUP", help="Without a users file (single sign-on): a group of the user (repeat).")] = None,
    config: ConfigOption = None,
) -> None:
    """Create an API token acting as USERNAME and print it once; only its hash is kept.

    NAME says what it is for (e.g. mattermost-bot). With a users file the user's groups and admin role are
    read from it at every request."""
    from ui.auth import load_users

    settings = _setup(ctx, config)
    groups: tuple[str, ...] = tuple(group or ())
    if settings.page.users_file:
        users = _guard(load_users)(settings.page.users_file)
        stored = users.get(user)
        if stored is None:
            _fail(f"no user {user!r} in {settings.page.users_file}: add them with `rag user add {user}`")
        if scope is Scope.admin and not stored.user.is_admin:
            _fail(f"{user!r} is not an admin: an admin token needs a user with the admin role")
        if group:
            _fail("--group is for deployments without a users file: the users file holds the groups")
    elif not settings.page.oidc:
        _fail("no users are configured (RAG_UI_USERS_FILE or RAG_UI_OIDC): the API is single-user on "
              "127.0.0.1 and needs no token")
    db = _app_db(settings)
    token = _guard(db.create_token)(name, user, scope.value, groups, expires, tuple(source or ()))
    typer.echo(token)
    typer.echo(f"token {name!r} for {user} ({scope.value}) created; it is shown only now: store it safely", err=True)


@token_app.command("list")
def token_list(ctx: typer.Context, json_out: JsonOption = False, config: ConfigOption = None) -> None:
    """List the tokens (never the tokens themselves): name, user, scope, state, dates."""
    import time as _time

    db = _app_db(_setup(ctx, config))
    now = _time.time()
    rows = [{"name": t.name, "user": t.username, "scope": t.scope, "state": t.state(now), "groups": list(t.groups),
             "sources": list(t.sources),
             "created": t.created, "expires": t.expires, "last_used": t.last_used} for t in db.tokens()]
    if json_out:
        typer.echo(json.dumps(rows))
        return
    day = lambda at: _time.strftime("%Y-%m-%d", _time.localtime(at)) if at else "-"  # noqa: E731
    for r in rows:
        typer.echo(f"{r['name']}  {r['user']}  {r['scope']}  {r['state']}  created {day(r['created'])}  "
                   f"expires {day(r['expires'])}  last used {day(r['last_used'])}")


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", hidden=True)],
                 config: ConfigOption = None) -> None:
    """Revoke the token NAME: its next request is refused."""
    db = _app_db(_setup(ctx, config))
    if not db.revoke_token(name):
        _fail(f"no active token named {name!r} (see `rag token list`)")
    typer.echo(f"token {name!r} revoked")


appdb_app = command_group("appdb", "The app database (conversations, tokens, feedback, audit).")


@appdb_app.command("migrate")
def appdb_migrate(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", metavar="URL|FILE", help="The new app database: postgresql://USER@HOST"
                                    "/DATABASE (empty; its password as RAG_APP_DB_PASSWORD_FILE or PG* say) or a "
                                    "new SQLite file.")],
    source: Annotated[Optional[str], typer.Option("--from", metavar="FILE|URL",
                                                  help="The database to copy (default: $RAG_APP_DB).")] = None,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Copy every row of the app database into a new one (SQLite to PostgreSQL, or back), as one consistent
    snapshot, ids kept, and check the counts; the source is left as it was. Stop the page and the API first
    (rows written after the snapshot are not copied), then set RAG_APP_DB to the new one."""
    from rag import pg

    settings = _setup(ctx, config)
    if not pg.is_url(to) and Path(to).exists():
        _fail(f"{to} exists: give a new file (or an empty PostgreSQL database)")
    origin: Path | str | None = None if source is None else source if pg.is_url(source) else Path(source)
    if isinstance(origin, Path) and not origin.is_file():
        _fail(f"no app database at {origin}")
    if origin is None and isinstance(settings.audit.app_db, Path) and not settings.audit.app_db.is_file():
        _fail(f"no app database at {settings.audit.app_db} (RAG_APP_DB): nothing to migrate")
    new_file = None if pg.is_url(to) else Path(to)
    with _guarded():
        src = _app_db(settings, origin)  # first: a source that cannot be opened leaves no new file behind
        target = _app_db(settings, new_file or to)
        try:
            copied = src.copy_into(target)
        except BaseException:
            if new_file is not None:  # the new file this run created holds nothing: it goes
                target.close()
                for part in (new_file, new_file.with_name(new_file.name + "-wal"),
                             new_file.with_name(new_file.name + "-shm")):
                    part.unlink(missing_ok=True)
            raise
    if json_out:
        typer.echo(json.dumps({"from": str(src), "to": str(target), "rows": copied}))
        return
    typer.echo(f"copied {sum(copied.values())} rows from {src} to {target} "
               f"({', '.join(f'{t} {n}' for t, n in copied.items())}); counts checked. Set RAG_APP_DB={target}")
