"""The web page: staff ask questions, admins index folders. A thin Streamlit layer over rag/ and ingest/.

`ui/web/app.py` is the script Streamlit runs (`rag ui` starts it: `streamlit run ui/web/app.py -- [--config FILE]
[--index DIR]`); the page lives here, in an importable module, so its process-wide state is one object. The models, the index
reader, the feedback database and the job manager are built once per process (`st.cache_resource`) and
shared by every session; each session only holds its conversation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from ingest.sources import is_url
from ingest.watch import WatchState
from rag.analysis import LANGUAGES
from rag.generation import GenerationParams, GeneratorBusyError
from rag.index import IndexNotFoundError, IndexView, RagIndexError, index_state
from rag.network import client_address as network_client_address
from rag.network import is_loopback
from rag.qa import Answer, QAService, build_service
from rag.followup import standalone_question
from rag.settings import ConfigError, PageSettings, Settings, load_settings
from rag.types import ADMIN, Principal
from ui.appdb import AppDB, AppDBError
from ui.auth import LOCAL_ADMIN, LoginThrottle, StoredUser, ThrottledError, User, UsersFile, oidc_user
from ui.conversations import answer_from_shown, shown_answer
from ui.jobs import Job, JobBusyError, JobManager, PathNotAllowedError
from ui.logs import configure_logging
from ui import insights
from ui.sources import RenderBusyError, SourceViewer
from ui.web.render import answer_markup, passage_markup, safe, source_label, source_text_markup, text_html

log = logging.getLogger(__name__)
MODES = ["hybrid", "dense", "keyword"]
# A local file: a Material or emoji icon would make the browser fetch it from Google's servers.
ICON = Path(__file__).with_name("icon.png")


@dataclass
class AppState:
    """What every session shares."""

    settings: Settings
    service: QAService
    db: AppDB
    jobs: JobManager
    users: UsersFile | None  # re-read when it changes: a removed user's session ends at the next run
    throttle: LoginThrottle
    viewer: SourceViewer


@dataclass
class Turn:
    """One question of a conversation and what came of it."""

    question: str
    standalone: str
    answer: Answer | None = None
    error: str = ""
    feedback: int | None = None
    seconds: float = 0.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ui/web/app.py")
    parser.add_argument("--config", type=Path, default=os.environ.get("RAG_CONFIG") or None)
    parser.add_argument("--index", type=Path)
    args, _ = parser.parse_known_args(argv)
    return args


@st.cache_resource(show_spinner=False)
def process_settings(argv: tuple[str, ...], environment: tuple[tuple[str, str], ...]) -> Settings:
    """The settings, built once per process from the command line `rag ui` gave the script and the RAG_*
    environment (the key: what they are built from); every session gets this same immutable object, so
    no session can see another's half-built configuration."""
    args = parse_args(list(argv))
    return load_settings(args.config, index_dir=args.index)


@st.cache_resource(show_spinner="Loading the index and the models…")
def app_state(settings_json: str) -> AppState:
    """Built once per process and settings; the models load here, not per session."""
    settings = Settings(**json.loads(settings_json))
    configure_logging(settings.log_format)
    users = UsersFile(settings.page.users_file) if settings.page.users_file else None
    service = build_service(settings)
    try:
        service.warm_up()
    except IndexNotFoundError:
        pass  # an empty index is a normal first state: the page says so, admins can index
    db = AppDB.from_settings(settings.audit)
    viewer = SourceViewer(int(settings.ingest.max_file_mb * 2**20), settings.ocr.max_pixels)
    return AppState(settings, service, db, JobManager(settings, service.embedder, db), users,
                    LoginThrottle(on_spraying=partial(report_spraying, db)), viewer)


def report_spraying(db: AppDB, address: str, accounts: int) -> None:
    """Password spraying seen: a warning in the log and an entry in the audit log, for the admins (nobody is
    refused for it: the address's own tries are slowed, the accounts' are each slowed by their own failures)."""
    log.warning("sign-in: failed passwords for %d accounts from %s in 10 minutes (password spraying?)", accounts,
                address)
    db.audit("-", f"sign-in failures for {accounts} accounts from {address}", "", "sign-in spraying", [], "", 0)


def principal(user: User, state: AppState) -> Principal:
    """What the user may read: everything for admins, else the documents of their groups (and of their
    system account, RAG_ACCOUNT_MAP)."""
    return ADMIN if user.is_admin else Principal.signed_in(user.username, user.groups, state.settings.page.accounts)


def friendly_error(exc: BaseException, user: User) -> str:
    """One sentence for the person at the page: what happened and what to do. Details (index paths,
    the generator's address, its error text) are for admins only."""
    detail = f" ({exc})" if user.is_admin else ""
    if isinstance(exc, IndexNotFoundError):
        if user.is_admin:
            return "No documents have been indexed yet: choose \u201cIndex a folder\u201d in the menu and index one."
        return "No documents have been indexed yet: ask an administrator to index your team's documents."
    if isinstance(exc, GeneratorBusyError):
        return "The model is busy answering other questions: try again in a moment."
    if isinstance(exc, TimeoutError):
        return f"The model took too long to answer{detail}. Try a shorter question or fewer passages."
    if isinstance(exc, ConnectionError):
        return f"The answer service is unreachable{detail}: try again later or tell an administrator."
    if isinstance(exc, (ConfigError, RagIndexError)):
        return f"The service is not set up correctly{detail}: tell an administrator."
    if isinstance(exc, ValueError):  # the question itself (too long): the user's to fix
        return f"The question could not be answered: {exc}"
    return f"The question could not be answered{detail}."


def client_address(settings: PageSettings) -> str | None:
    """The client's own address: the peer's, or behind a trusted reverse proxy the one it forwards (None
    when it is not known: sign-in is then throttled per account only)."""
    headers = st.context.headers
    forwarded = headers.get("X-Forwarded-For") if headers else None
    return network_client_address(peer_address(), forwarded, settings.trusted_proxies)


def peer_address() -> str | None:
    """The address of the websocket's TCP peer. Not `st.context.ip_address`: it answers None for a peer on
    loopback, which is exactly where a reverse proxy on the same host connects from, so the proxy's
    X-Forwarded-For would never be read and every client would share one unknown address. Streamlit's own
    request guard reads the same field (`client_context.remote_ip`, the unforgeable peer)."""
    ctx = get_script_run_ctx()
    client = runtime.get_instance().get_client(ctx.session_id) if ctx is not None and runtime.exists() else None
    context = getattr(client, "client_context", None)
    if context is None:
        return getattr(st.context, "ip_address", None)
    remote = getattr(context, "remote_ip", None)
    return str(remote) if remote else None


# -- sign-in -------------------------------------------------------------------------------------------
def current_user(state: AppState) -> User:
    """The signed-in user; shows the sign-in form and stops the script when there is none."""
    s = state.settings.page
    if s.oidc:
        if not st.user.is_logged_in:
            st.title("Document Q&A")
            st.button("Sign in with single sign-on", on_click=st.login)
            st.stop()
        try:
            oidc = oidc_user(st.user.to_dict(), s.oidc_admin_group, time.time())
        except ConfigError as exc:
            st.error(f"Sign-in refused: {exc}. Ask an administrator to fix the identity provider's settings.")
            st.stop()
        if oidc is None:  # the identity token expired: sign in again, so group changes apply
            st.logout()
            st.stop()
        return oidc
    if state.users is None:
        return LOCAL_ADMIN
    try:
        people = state.users.current()
    except ConfigError as exc:  # fail closed: the last good copy may still list a removed user
        st.error(f"Sign-in is unavailable: {exc}. Tell an administrator.")
        st.stop()
    signed_in = session_user(people)
    if signed_in is not None:
        return signed_in
    st.title("Document Q&A")
    if st.session_state.pop("signed_out_why", None):
        st.warning("You were signed out: your account was removed or its password changed. Sign in again.")
    with st.form("login"):
        username = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            checked = state.throttle.verify(people, username.strip(), password, client_address(s))
        except ThrottledError as exc:
            st.error(f"Sign-in refused: {exc}.")
            st.stop()
        if checked is not None:
            st.session_state.user = checked
            st.session_state.password_hash = people[checked.username].password_hash
            st.rerun()
        st.error("Unknown user name or wrong password.")
    st.stop()


def session_user(people: dict[str, StoredUser]) -> User | None:
    """The session's user as the users file describes them now (roles and groups changed there apply at once);
    None when nobody is signed in, and the session is ended when its user was removed or their password
    changed since they signed in (a reset after a compromise ends the intruder's session too)."""
    user = st.session_state.get("user")
    if not isinstance(user, User):
        return None
    stored = people.get(user.username)
    if stored is None or stored.password_hash != st.session_state.get("password_hash"):
        st.session_state.clear()
        st.session_state.signed_out_why = True
        return None
    if stored.user != user:
        st.session_state.user = stored.user
    return stored.user


def sign_out() -> None:
    if st.session_state.get("user") is not None:
        st.session_state.clear()
    else:
        st.logout()


# -- ask -----------------------------------------------------------------------------------------------
def ask_page(state: AppState, user: User) -> None:
    s = state.settings.answers
    with st.sidebar:
        st.subheader("Answer settings")
        passages = st.slider("Passages given to the model", 1, 10, s.passages, key="passages")
        mode = st.selectbox("Search", MODES, index=MODES.index(state.settings.search.mode), key="mode")
        temperature = st.slider("Temperature", 0.0, 1.0, float(s.temperature), 0.05, key="temperature")
        if st.button("New conversation", key="new-conversation"):
            st.session_state.chat = []
            st.session_state.conversation = None
        conversations_sidebar(state, user)
    chat: list[Turn] = st.session_state.setdefault("chat", [])
    st.title("Ask your documents")
    if not chat:
        st.caption("Answers come only from the indexed documents, with their sources. Sentences no source "
                   "supports are marked.")
    for i, turn in enumerate(chat):
        show_turn(state, user, i, turn)
    question = st.chat_input("Ask a question about your documents", max_chars=s.max_question_chars)
    if not question or not question.strip():
        return
    standalone = standalone_question([t.question for t in chat], question)
    turn = Turn(question.strip(), standalone)
    with st.chat_message("user"):
        st.markdown(safe(turn.question))
    with st.chat_message("assistant"):
        if standalone != turn.question:
            st.caption(f"Searched for: {safe(standalone)}")
        placeholder = st.empty()
        text, started = "", time.perf_counter()
        params = GenerationParams(max_new_tokens=s.max_new_tokens, temperature=temperature,
                                  timeout_s=s.timeout_s, owner=user.username)
        try:
            for piece in state.service.ask_stream(standalone, params, passages, mode, principal(user, state)):
                if isinstance(piece, Answer):
                    turn.answer = piece
                elif isinstance(piece, str):
                    text += piece
                    placeholder.html(text_html(text + " ▌"))
        except (RuntimeError, TimeoutError, ConnectionError, ValueError) as exc:
            turn.error = friendly_error(exc, user)
        turn.seconds = time.perf_counter() - started
    state.db.audit_answer(user.username, turn.question, standalone, turn.answer, turn.error, turn.seconds)
    remember(state, user, turn)
    chat.append(turn)
    st.rerun()  # draw the finished turn with its sources and feedback buttons


def remember(state: AppState, user: User, turn: Turn) -> None:
    """Store the turn in the user's conversation (started by its first question), so it survives a reload
    and shows in the sidebar (and in the API's /v1/conversations)."""
    conversation = st.session_state.get("conversation")
    if conversation is None or state.db.conversation(user.username, conversation) is None:
        conversation = state.db.start_conversation(user.username, turn.question)
        st.session_state.conversation = conversation
    state.db.add_turn(user.username, conversation, turn.question, turn.standalone,
                      turn.answer.to_dict() if turn.answer else {}, turn.error)


def conversations_sidebar(state: AppState, user: User) -> None:
    """The user's past conversations: reopen one, rename or delete the open one."""
    past = state.db.conversations(user.username, 30)
    if not past:
        return
    st.subheader("Conversations")
    current = st.session_state.get("conversation")
    for c in past:
        # a title is the user's (or an API client's) text: escaped, a button label renders Markdown
        label = safe(f"{c.title[:40]} · {time.strftime('%d %b', time.localtime(c.updated))}")
        if st.button(label, key=f"conversation-{c.id}", type="primary" if c.id == current else "secondary",
                     use_container_width=True):
            st.session_state.conversation = c.id
            # sources resolved for the user as they are now (gone or no longer readable ones say so, an answer
            # standing on one is withheld), in the current version: they open again after a re-index
            try:
                view: IndexView | None = state.service.searcher.current()
            except RagIndexError:
                view = None  # no index: every source is unavailable
            st.session_state.chat = [
                Turn(t.question, t.searched,
                     answer_from_shown(shown_answer(t.answer, view, principal(user, state))) if t.answer else None, t.error)
                for t in state.db.turns(user.username, c.id)]
            st.rerun()
    if current is not None and any(c.id == current for c in past):
        title = st.text_input("Rename this conversation", key=f"rename-{current}", max_chars=120)
        if title.strip() and st.button("Rename", key="rename-conversation"):
            state.db.rename_conversation(user.username, current, title)
            st.rerun()
        if st.button("Delete this conversation", key="delete-conversation"):
            state.db.delete_conversation(user.username, current)
            st.session_state.chat, st.session_state.conversation = [], None
            st.rerun()


def show_turn(state: AppState, user: User, i: int, turn: Turn) -> None:
    with st.chat_message("user"):
        st.markdown(safe(turn.question))
    with st.chat_message("assistant"):
        if turn.standalone != turn.question:
            st.caption(f"Searched for: {safe(turn.standalone)}")
        if turn.error or turn.answer is None:
            st.html(f'<div class="rag-error">{text_html(turn.error or "No answer.")}</div>')  # text, never Markdown
            return
        answer = turn.answer
        if answer.note:  # a quote instead of the model's answer, a hedge, the demo model: said plainly, above
            st.warning(safe(answer.note), icon=":material/info:")
        st.html(answer_markup(answer))
        for mark in answer.support:
            if not mark.supported:
                st.caption(f"Marked: \u201c{safe(mark.sentence)}\u201d \u2014 {safe(mark.reason)}.")
        if answer.generated:
            if st.toggle("Show the model's own answer", key=f"model-answer-{i}"):
                st.html(answer_markup(replace(answer, answer=answer.generated, support=answer.generated_support)))
                for mark in answer.generated_support:
                    if not mark.supported:
                        st.caption(f"Not backed: \u201c{safe(mark.sentence)}\u201d \u2014 {safe(mark.reason)}.")
        st.caption(f"{answer.model} · index version {answer.index_version} · {turn.seconds:.1f} s")
        for j, source in enumerate(answer.sources):
            with st.expander(source_label(source), expanded=source.cited or len(answer.sources) == 1):
                st.html(passage_markup(source, answer.support))
                if source.chunk_id and st.button("Open the source", key=f"open-{i}-{j}", icon=":material/description:",
                             help="The cited page with the passage highlighted, and the original file"):
                    st.session_state[f"viewer-page-{source.chunk_id}"] = source.page
                    source_dialog(state, user, source.chunk_id)
        feedback(state, user, i, turn)


@st.dialog("Source", width="large")
def source_dialog(state: AppState, user: User, chunk_id: int) -> None:
    """The cited page (rendered, passage highlighted) or the text around the passage, previous/next page,
    and the original file: only for a user who may read the document (anyone else sees the same message
    as for a document no longer indexed)."""
    key = f"viewer-page-{chunk_id}"
    view = state.service.searcher.current()
    try:
        shown = state.viewer.page(view, chunk_id, principal(user, state), st.session_state.get(key))
    except RenderBusyError:
        st.warning("Other pages are being drawn right now: open the source again in a moment.")
        return
    if shown is None:
        st.error("This source is not available: it is no longer indexed, or you may not read it.")
        return
    document = shown.document
    state.db.audit_source(user.username, "viewed source", document.path, document.doc_id, shown.page)
    where = f" · {shown.unit} {shown.page}" + (f" of {shown.pages}" if shown.pages else "") if shown.page else ""
    st.markdown(f"**{safe(document.title)}**")
    st.caption(safe(document.path) + where)
    if shown.note:
        st.info(safe(shown.note[0].upper() + shown.note[1:]) + ".")
    if shown.page is not None and shown.pages:
        back, forward, _ = st.columns([1, 1, 4])
        if back.button("Previous", key="viewer-previous", disabled=shown.page <= 1, icon=":material/arrow_back:"):
            st.session_state[key] = shown.page - 1
            st.rerun(scope="fragment")
        if forward.button("Next", key="viewer-next", disabled=shown.page >= shown.pages,
                          icon=":material/arrow_forward:"):
            st.session_state[key] = shown.page + 1
            st.rerun(scope="fragment")
    if not shown.highlighted and shown.page is not None:
        st.caption("The cited passage is on another page." if st.session_state.get(key) else
                   "The passage could not be located on the page; its text is under the answer.")
    if shown.kind == "image":
        st.image(shown.png, use_container_width=True)
    else:
        st.html(source_text_markup(shown.text, list(shown.spans)))
    if is_url(document.path):  # a crawled page: its own site serves it (a link, no download)
        st.link_button("Open on its site", document.path, icon=":material/open_in_new:")
        return
    changed = state.viewer.file_changed(document)
    if changed:
        st.warning(safe(changed[0].upper() + changed[1:]) + ".")
        return

    def original() -> bytes:
        found = state.viewer.original(state.service.searcher.current(), document.doc_id, principal(user, state))
        if found is None:
            raise PermissionError("not available")
        state.db.audit_source(user.username, "downloaded", document.path, document.doc_id)
        return found[1]

    st.download_button("Download original", original, file_name=Path(document.path).name,
                       mime="application/octet-stream", icon=":material/download:", key="viewer-download",
                       on_click="ignore")


def feedback(state: AppState, user: User, i: int, turn: Turn) -> None:
    if turn.feedback is not None:
        st.caption("Thank you for the feedback.")
        return
    answer = turn.answer
    assert answer is not None
    up, down, comment_col = st.columns([1, 1, 10], vertical_alignment="center")
    comment = comment_col.text_input("Comment", key=f"comment-{i}", placeholder="Comment (optional)",
                                     label_visibility="collapsed", max_chars=2000)
    # Material icons ship with Streamlit's own font; emoji would need a font the server may not have
    rating = 1 if up.button("", icon=":material/thumb_up:", key=f"up-{i}", help="Helpful") else -1 if down.button(
        "", icon=":material/thumb_down:", key=f"down-{i}", help="Not helpful") else 0
    if rating:
        sources = [{"path": s.path, "page": s.page, "chunk_id": s.chunk_id, "cited": s.cited} for s in answer.sources]
        state.db.add_feedback(user.username, turn.question, answer.answer, sources, rating, comment,
                              answer.model, answer.index_version)
        turn.feedback = rating
        st.rerun()


# -- admin ---------------------------------------------------------------------------------------------
def require_admin(user: User) -> None:
    if not user.is_admin:
        st.error("This page is for administrators.")
        st.stop()


def index_page(state: AppState, user: User) -> None:
    require_admin(user)
    st.title("Index a folder")
    roots = state.settings.page.allowed_roots
    if roots:
        st.caption("Allowed folders: " + ", ".join(safe(str(r)) for r in roots))
    else:
        st.warning("No folder may be indexed from the page: set RAG_UI_ALLOWED_ROOTS and restart.")
    with st.form("index-form"):
        folder = st.text_input("Folder", placeholder=str(roots[0]) if roots else "/srv/documents")
        submitted = st.form_submit_button("Index")
    if submitted:
        try:
            state.jobs.start_ingest(folder, user.username)
        except (PathNotAllowedError, JobBusyError) as exc:
            st.error(safe(str(exc)))
    job_panel(state, runs=True)


@st.fragment(run_every=1.0)
def job_panel(state: AppState, runs: bool = False) -> None:
    """The current or last job, and with `runs` the table of last runs, redrawn every second while the rest
    of the page stays put (so the table shows a run as done when it ends, without a reload)."""
    job = state.jobs.current
    if job is not None:
        job_status(job)
        seen_running = f"job-{job.run_id}-running"
        if job.running:
            st.session_state[seen_running] = True
        elif st.session_state.pop(seen_running, False):
            st.rerun()  # it just ended: the rest of the page (documents, removals) shows the new version
    if runs:
        runs_table(state)


def job_status(job: Job) -> None:
    # paths are file names from a share (anyone who can write there chooses them): literal text, never Markdown
    what = safe(f"{'Indexing' if job.kind == 'ingest' else 'Removing'} {', '.join(job.paths)}")
    if job.running:
        if job.phase in ("starting", "scanning"):
            st.progress(0.0, text=f"{what}: looking for files, {job.files_total} found so far")
        elif job.phase == "indexing":
            st.progress(job.fraction, text=f"{what}: {job.files_done} of {job.files_total} files, "
                                           f"{job.chunks} chunks added")
        else:
            st.progress(1.0, text=f"{what}: {'publishing the new index version' if job.phase == 'publishing' else 'working'}")
        return
    if job.error:
        st.error(f"{what} failed: {safe(job.error)}")
        return
    summary = job.summary or {}
    if job.kind == "ingest":
        failed = summary.get("files_failed", [])
        st.success(f"{what}: done in {summary.get('seconds', 0):.1f} s. {summary.get('files_indexed', 0)} indexed, "
                   f"{summary.get('files_unchanged', 0)} unchanged, {summary.get('files_removed', 0)} removed, "
                   f"{len(failed)} failed, {summary.get('files_skipped', 0)} skipped; "
                   f"index version {summary.get('version')}."
                   + (f" {summary['pages_ocr']} pages read by OCR." if summary.get("pages_ocr") else "")
                   + (f" {summary['files_reparsed']} files read again by this release's parsers: "
                      f"{summary.get('chunks_embedded', 0)} of {summary.get('chunks_added', 0)} chunks embedded, "
                      f"the others kept their vectors." if summary.get("files_reparsed") else ""))
        if failed:
            st.dataframe(failed, hide_index=True, column_config={"path": "File", "error": "Why it failed"})
        if summary.get("nothing_to_index"):
            st.info("Skipped, with nothing to index (no fault):")
            st.dataframe(summary["nothing_to_index"], hide_index=True,
                         column_config={"path": "File", "error": "Why"})
        if summary.get("parts_unread"):
            st.warning("Indexed, but part of these files could not be read:")
            st.dataframe(summary["parts_unread"], hide_index=True,
                         column_config={"path": "File", "error": "What was left out"})
    elif summary.get("documents_removed", 0) == 0:
        st.warning(f"{what}: no indexed document was at or under this path, so nothing was removed. "
                   f"Check the path against the list of documents.")
    else:
        st.success(f"{what}: {summary.get('documents_removed', 0)} document(s) removed; "
                   f"index version {summary.get('version')}.")


def runs_table(state: AppState) -> None:
    runs = state.db.last_runs()
    if not runs:
        return
    st.subheader("Last runs")
    st.dataframe([{
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)), "by": r.username,
        "kind": r.kind, "paths": ", ".join(r.paths), "status": r.status,
        "indexed": r.summary.get("files_indexed", r.summary.get("documents_removed")),
        "failed": len(r.summary.get("files_failed", [])), "error": r.error,
    } for r in runs], hide_index=True)


def documents_page(state: AppState, user: User) -> None:
    require_admin(user)
    st.title("Indexed documents")
    progress = index_state(state.settings.index)
    note = progress.describe() if progress is not None else ""
    if note:
        st.info(note[0].upper() + note[1:])
    watching = WatchState.read(state.settings.index_dir)
    if watching is not None:  # `rag ingest --watch`: changes are published seconds after they happen
        (st.info if watching.alive else st.warning)(safe(watching.describe()[0].upper() + watching.describe()[1:]))
    try:
        view = state.service.searcher.current()
    except IndexNotFoundError:
        if not note:
            st.info("No documents are indexed yet: choose \u201cIndex a folder\u201d in the menu and index one.")
        return
    status = view.status()
    a, b, c = st.columns(3)
    a.metric("Documents", status["documents"])
    b.metric("Chunks", status["chunks"])
    c.metric("Index version", status["version"])
    published = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(status["published_at"])))
    languages = ", ".join(f"{LANGUAGES.get(lang, 'not recognised').capitalize()} {n}"
                          for lang, n in status["languages"].items())  # type: ignore[attr-defined]
    st.caption(f"Last published {published} · embedding model {status['embedding_model']} · "
               f"{status['index_type']} index on {status['device']}" + (f" · chunks by language: {languages}"
                                                                       if languages else ""))
    sources = view.sources()
    if sources:  # folders, sites, mailboxes and pushing systems, as `rag sources` lists them
        st.subheader("Sources")
        st.dataframe([{"kind": r.kind, "source": r.name,
                       "last sync": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.last_sync)),
                       "found": r.items, "failed": r.failed, "first failures": "; ".join(r.errors)} for r in sources],
                      hide_index=True, key="sources-table")
    contains = st.text_input("Find documents", placeholder="part of a path or title")
    docs = view.list_documents(contains)
    table = st.dataframe(
        [{**asdict(doc), "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(doc.modified))} for doc in docs],
        hide_index=True, on_select="rerun", selection_mode="multi-row", key="documents-table")
    if len(docs) == 200:
        st.caption("The first 200 matches; narrow the search to see others.")
    chosen = [docs[i].path for i in table.selection.rows if i < len(docs)]  # type: ignore[union-attr]
    if chosen:
        if st.button(f"Remove {len(chosen)} selected document(s) from the index\u2026", key="remove-selected"):
            confirm_removal(state, user, chosen)
    else:
        st.caption("Select documents in the table to remove them from the index.")
    with st.form("remove-form"):
        target = st.text_input("Or remove a folder (every indexed document under it)", placeholder="/srv/documents/old")
        if st.form_submit_button("Remove\u2026") and target.strip():
            confirm_removal(state, user, [target.strip()])
    job_panel(state)
    exclusions = view.exclusions()
    if exclusions:
        st.subheader("Removed from the index")
        st.caption("Indexing runs leave these out until the removal is undone.")
        for i, removed in enumerate(exclusions):
            left, right = st.columns([6, 1], vertical_alignment="center")
            left.text(f"{removed.path} (by {removed.excluded_by or 'unknown'}, "
                      f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(removed.created))})")
            if right.button("Undo", key=f"undo-{i}"):
                try:
                    state.jobs.restore(removed.path)
                    st.success(f"{safe(removed.path)} will be indexed again at the next run of its folder.")
                except (PathNotAllowedError, RagIndexError) as exc:
                    st.error(safe(str(exc)))
    st.subheader("Feedback and audit log")
    left, right = st.columns(2)
    left.download_button(f"Export feedback as CSV ({state.db.feedback_count()} entries)", state.db.feedback_csv(),
                         file_name="feedback.csv", mime="text/csv")
    right.download_button("Export the audit log as CSV", state.db.audit_csv(), file_name="audit.csv",
                          mime="text/csv")


@st.dialog("Remove from the index?")
def confirm_removal(state: AppState, user: User, paths: list[str]) -> None:
    """Asks before removing; says at once when a path matches nothing (a typo), instead of starting a job."""
    try:
        matched = state.jobs.indexed_under(paths, state.service.searcher.current())
    except (PathNotAllowedError, RagIndexError) as exc:
        st.error(safe(str(exc)))
        return
    if matched == 0:
        st.warning(f"No indexed document is at or under {safe(', '.join(paths))}: nothing to remove. "
                   "Check the path against the list of documents.")
        return
    st.write(f"{matched} document(s) will be taken out of the index and left out of later indexing runs "
             "until you undo it. The files themselves are not touched.")
    for path in paths[:10]:
        st.text(path)
    if len(paths) > 10:
        st.caption(f"and {len(paths) - 10} more")
    if st.button("Remove", type="primary", key="confirm-removal"):
        try:
            state.jobs.start_removal(paths, user.username)
        except (PathNotAllowedError, JobBusyError) as exc:
            st.error(safe(str(exc)))
            return
        st.rerun()


def insights_page(state: AppState, user: User) -> None:
    """How the service is used, from the audit log and the feedback: Streamlit's own charts (no CDN, no
    external fonts), every list exportable."""
    require_admin(user)
    st.title("Insights")
    today = datetime.date.today()
    picked = st.date_input("Dates", (today - datetime.timedelta(days=29), today), max_value=today, key="insights-dates")
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.caption("Choose the last day of the range.")
        return
    data = insights.compute(state.db, picked[0], picked[1])
    if state.settings.audit.retention_days <= 0:
        st.warning("The audit log is off (RAG_AUDIT_RETENTION_DAYS=0): only feedback is counted.")
    a, b, c, d = st.columns(4)
    a.metric("Questions", data.questions)
    share = data.answered_share
    b.metric("Answered", "–" if share is None else f"{share:.0%}",
             help=f"{data.answered} answered, {data.abstained} without an answer, {data.failed} failed")
    c.metric("Thumbs up / down", f"{data.thumbs_up} / {data.thumbs_down}")
    d.metric("Answer time, median / p95", "–" if data.median_s is None else
             f"{data.median_s:.1f} s / {data.p95_s:.1f} s")
    st.subheader("Questions per day")
    st.bar_chart([{"day": x.day, "answered": x.answered, "no answer": x.abstained, "failed": x.failed}
                  for x in data.days], x="day", y=["answered", "no answer", "failed"],
                 color=["#2e7d32", "#f9a825", "#c62828"], x_label="", y_label="questions")
    st.subheader("Most cited documents")
    if data.documents:
        st.dataframe([asdict(doc) for doc in data.documents[:50]], hide_index=True, column_config={
            "path": "Document", "cited": "Cited by answers", "shown": "Shown as a source"})
        st.download_button("Export as CSV", insights.to_csv(list(data.documents)), file_name="cited-documents.csv",
                           mime="text/csv", key="export-documents", on_click="ignore")
    else:
        st.caption("No answers in this range.")
    st.subheader("Content gaps: no answer, or not helpful")
    if data.gaps:
        st.dataframe([asdict(gap) for gap in data.gaps[:200]], hide_index=True, column_config={
            "asked": "When", "question": "Question", "why": "Why", "comment": "Comment"})
        st.download_button("Export as CSV", insights.to_csv(list(data.gaps)), file_name="content-gaps.csv",
                           mime="text/csv", key="export-gaps", on_click="ignore")
    else:
        st.caption("Every question in this range was answered, and none was rated not helpful.")


# -- page ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageSpec:
    """One entry of the navigation."""

    title: str
    url_path: str
    icon: str
    render: Callable[[AppState, User], None]


ASK = PageSpec("Ask", "ask", ":material/chat:", ask_page)
ADMIN_PAGES = (PageSpec("Index a folder", "index", ":material/upload:", index_page),
               PageSpec("Documents", "documents", ":material/folder:", documents_page),
               PageSpec("Insights", "insights", ":material/insights:", insights_page))


def pages_for(user: User) -> list[PageSpec]:
    """The pages a user may open: Ask for everyone; Index, Documents and Insights for admins only. Streamlit serves
    only the pages in the navigation, so a user who types an admin page's address gets the Ask page."""
    return [ASK, *ADMIN_PAGES] if user.is_admin else [ASK]


def request_host() -> str | None:
    """The host name the browser used to reach the page (None where there is no HTTP request: tests)."""
    host = st.context.headers.get("Host") if st.context.headers else None
    return urlsplit(f"//{host}").hostname if host else None  # "[::1]:8501" -> "::1", "localhost:8501" -> "localhost"


def refuse_unsafe_single_user(settings: PageSettings) -> None:
    """Single-user mode makes whoever reaches the page its admin: only on loopback, only under a loopback
    name. Checked here on every run, whoever started Streamlit and however (not only by `rag ui`)."""
    if settings.users_file or settings.oidc:
        return
    address = str(st.get_option("server.address") or "")
    if not is_loopback(address):
        st.error("No users are configured, and this page is served on "
                 f"{address or 'every network interface'}: single-user mode is only allowed on 127.0.0.1. "
                 "Configure RAG_UI_USERS_FILE or RAG_UI_OIDC, or start it with `rag ui`.")
        st.stop()
    host = request_host()
    if host is not None and not is_loopback(host):  # DNS rebinding: another site's name pointed at us
        st.error("This page only answers at localhost in single-user mode.")
        st.stop()


def main(argv: list[str]) -> None:
    st.set_page_config(page_title="Document Q&A", page_icon=str(ICON), layout="wide")
    try:
        settings = process_settings(tuple(argv), tuple(sorted((k, v) for k, v in os.environ.items()
                                                              if k.startswith("RAG_"))))
        state = app_state(settings.model_dump_json())
    except (ConfigError, ValueError) as exc:
        st.error(f"The service cannot start: {exc}")
        st.stop()
    except AppDBError as exc:  # the details (the database's address) go to the log, not to any visitor
        log.error("the page cannot start: %s", exc)
        st.error("The service's database cannot be reached: try again in a moment (the log says why).")
        st.stop()
    refuse_unsafe_single_user(state.settings.page)
    user = current_user(state)
    with st.sidebar:
        if state.users is None and not state.settings.page.oidc:
            st.info("Single-user mode: no users are configured, so the page only listens on 127.0.0.1.")
        else:
            st.caption(f"Signed in as {safe(user.name)} ({', '.join(user.roles)})")
            st.button("Sign out", on_click=sign_out, key="sign-out")
    pages = [st.Page(partial(spec.render, state, user), title=spec.title, icon=spec.icon, url_path=spec.url_path,
                     default=spec is ASK) for spec in pages_for(user)]
    st.navigation(pages).run()
