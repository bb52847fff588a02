"""The `rag` command line, run as a real process over the bundled sample folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES
from tests.docgen import HANGAR_QUESTION, write_hangar_pages

# The golden set: a newcomer's questions about the sample folder and the document that answers each.
GOLDEN = {
    "How many vacation days do new employees get?": "leave-policy.pdf",
    "How long is parental leave?": "leave-policy.pdf",
    "How do I connect to the VPN?": "it-handbook.docx",
    "Where do I pick up my badge on the first day?": "welcome-deck.pptx",
    "When is salary paid?": "welcome-deck.pptx",
    "What changed in release 4.2?": "release-notes-4.2.md",
    "When is the cafeteria open?": "cafeteria.html",
    "How much does the Business edition cost per user?": "price-list-2026.xlsx",
    "What discount do we give for a contract of 100,000 EUR?": "discount-tiers.csv",
    "When does the office move to the Harbour Building?": "office-move.eml",
    "Who gets paged when the on-call engineer does not answer?": "on-call.rst",
    "Which team owns the billing service?": "service-catalog.json",
    "Do I have to declare a gift from a supplier?": "code-of-conduct.docx",
    "What is the hotel limit in London?": "travel-policy.txt",
    # dense search alone ranks these wrong (MiniLM misses "password"/"business class"); hybrid gets them
    "How often do I have to change my password?": "it-handbook.docx",
    "Can I fly business class to New York?": "travel-policy.txt",
}


def rag(*args: str, env_extra: dict[str, str] | None = None, cwd: Path = REPO,
        python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RAG_DEVICE="cpu", PYTHONPATH=str(REPO), **(env_extra or {}))
    env.pop("RAG_INDEX_DIR", None) if "RAG_INDEX_DIR" not in (env_extra or {}) else None
    return subprocess.run([sys.executable, *python, "-m", "ui.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("cli") / "index"
    done = rag("ingest", str(SAMPLES), "--index", str(index), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary) >= {"files_seen", "files_indexed", "files_unchanged", "files_removed", "files_failed",
                            "chunks_added", "chunks_removed", "vectors_total", "seconds"}
    assert summary["files_seen"] == summary["files_indexed"] == 12 and summary["files_failed"] == []
    return index


@pytest.mark.slow
def test_golden_questions_find_the_right_document_first(sample_index: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(GOLDEN) + "\n")
    done = rag("search", "--queries", str(queries), "--index", str(sample_index), "--json", "--k", "3")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [line["query"] for line in lines] == list(GOLDEN)  # one line per query, in order
    for line in lines:
        hit = line["hits"][0]
        assert set(hit) >= {"chunk_id", "path", "page", "score", "text"}
        assert Path(hit["path"]).name == GOLDEN[line["query"]], line["query"]
        assert set(line["timings_ms"]) >= {"embed", "search", "total"}


@pytest.mark.slow
def test_search_modes(sample_index: Path) -> None:
    for mode in ("dense", "keyword", "hybrid"):
        done = rag("search", "parental leave weeks", "--index", str(sample_index), "--json", "--mode", mode)
        assert done.returncode == 0, done.stderr
        assert Path(json.loads(done.stdout)["hits"][0]["path"]).name == "leave-policy.pdf", mode
    bad = rag("search", "x", "--index", str(sample_index), "--mode", "fuzzy")
    assert bad.returncode == 2 and "'--mode'" in bad.stderr


@pytest.mark.slow
def test_search_shows_each_pages_best_chunk_first_unless_by_score(tmp_path: Path) -> None:
    docs = write_hangar_pages(tmp_path / "docs")
    env = {"RAG_CHUNK_TOKENS": "24", "RAG_CHUNK_OVERLAP_TOKENS": "0"}
    index = tmp_path / "index"
    assert rag("ingest", str(docs), "--index", str(index), env_extra=env).returncode == 0

    def names(*extra: str) -> list[str]:
        done = rag("search", HANGAR_QUESTION, "--index", str(index), "--json",
                   "--k", "2", *extra, env_extra=env)
        assert done.returncode == 0, done.stderr
        return [Path(h["path"]).name for h in json.loads(done.stdout)["hits"]]

    assert names("--by-score") == ["hangar.txt", "hangar.txt"]
    assert sorted(names()) == ["gate.txt", "hangar.txt"]


@pytest.mark.slow
def test_pdf_hit_carries_its_page(sample_index: Path) -> None:
    done = rag("search", "How long is parental leave?", "--index", str(sample_index), "--json", "--k", "1")
    hit = json.loads(done.stdout.strip())["hits"][0]
    assert hit["page"] == 2 and "16 weeks" in hit["text"]


def test_status(sample_index: Path) -> None:
    done = rag("status", "--index", str(sample_index), "--json")
    status = json.loads(done.stdout)
    assert status["documents"] == 12 and status["chunks"] == status["vectors"] > 12
    assert status["embedding_model"].startswith("all-MiniLM-L6-v2@")
    assert (status["index_type"], status["device"], status["version"]) == ("flat", "cpu", 1)


def test_index_dir_from_environment(sample_index: Path) -> None:
    done = rag("status", "--json", env_extra={"RAG_INDEX_DIR": str(sample_index)})
    assert json.loads(done.stdout)["documents"] == 12


def test_errors_are_one_line_with_what_to_do(tmp_path: Path) -> None:
    missing = rag("search", "hello", "--index", str(tmp_path / "none"), cwd=tmp_path)
    assert missing.returncode == 2 and "rag ingest FOLDER" in missing.stderr and "Traceback" not in missing.stderr
    bad_folder = rag("ingest", str(tmp_path / "nope"), "--index", str(tmp_path / "i"))
    assert bad_folder.returncode == 2 and "not found" in bad_folder.stderr
    bad_model = rag("ingest", str(SAMPLES), "--index", str(tmp_path / "i"), env_extra={"RAG_EMBEDDING_MODEL": "/models/none"})
    assert bad_model.returncode == 2 and "huggingface-cli download" in bad_model.stderr
    bad_config = rag("status", env_extra={"RAG_CHUNK_TOKENS": "10", "RAG_CHUNK_OVERLAP_TOKENS": "50"})
    assert bad_config.returncode == 2 and "invalid configuration" in bad_config.stderr


@pytest.mark.slow
def test_ask_json_lines_in_order(sample_index: Path, model_cache: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_text("When is lunch served in the cafeteria?\nWhat is the capital of Peru?\n")
    done = rag("ask", "--queries", str(questions), "--index", str(sample_index), "--json",
               env_extra={"RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_ANSWER_PASSAGES": "1"})
    assert done.returncode == 0, done.stderr
    first, second = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert set(first) >= {"question", "answer", "abstained", "sources", "support", "model", "timings_ms"}
    assert first["question"].startswith("When is lunch") and not first["abstained"]
    assert set(first["sources"][0]) >= {"chunk_id", "path", "page", "score", "text", "cited"}
    assert set(first["timings_ms"]) >= {"embed", "search", "generate", "total"}
    assert second["abstained"] and second["answer"] == "I could not find this in the indexed documents."


def test_config_file(tmp_path: Path, sample_index: Path) -> None:
    config = tmp_path / "rag.toml"
    config.write_text(f'index_dir = "{sample_index}"\n')
    done = rag("status", "--json", "--config", str(config))
    assert json.loads(done.stdout)["documents"] == 12


def test_ui_refuses_a_public_address_without_users_and_user_add_hashes(tmp_path: Path) -> None:
    refused = rag("ui", "--host", "0.0.0.0", "--index", str(tmp_path / "index"))
    assert refused.returncode == 2 and "127.0.0.1 only" in refused.stderr and "RAG_UI_USERS_FILE" in refused.stderr
    users = tmp_path / "users.yaml"
    env = dict(os.environ, RAG_DEVICE="cpu", PYTHONPATH=str(REPO))
    added = subprocess.run([sys.executable, "-m", "ui.cli", "user", "add", "ada", "--admin", "--users-file",
                            str(users), "--password-stdin"], input="correct horse\n", capture_output=True,
                           text=True, env=env, timeout=120, cwd=REPO)
    assert added.returncode == 0, added.stderr
    assert "correct horse" not in users.read_text() and "admin" in users.read_text()
    broken = tmp_path / "broken.yaml"
    broken.write_text("credentials:\n  usernames:\n    bob:\n      password: plaintext\n")
    bad = rag("ui", "--index", str(tmp_path / "index"), env_extra={"RAG_UI_USERS_FILE": str(broken)})
    assert bad.returncode == 2 and "not a bcrypt hash" in bad.stderr


@pytest.mark.slow
def test_doctor_says_what_to_fix(tmp_path: Path) -> None:
    bad = rag("doctor", "--index", str(tmp_path / "none"), env_extra={"RAG_GENERATOR_MODEL": str(tmp_path / "dolly")},
              cwd=tmp_path)
    assert bad.returncode == 1
    assert "FAIL  generator" in bad.stdout and "huggingface-cli download" in bad.stdout
    assert "WARN  index" in bad.stdout and "rag ingest" in bad.stdout
    assert rag("ingest", str(SAMPLES / "intranet"), "--index", str(tmp_path / "index")).returncode == 0
    good = rag("doctor", "--index", str(tmp_path / "index"), "--json")
    assert good.returncode == 0, good.stdout
    checks = {c["name"]: c for c in json.loads(good.stdout)}
    assert checks["index"]["status"] == checks["embedding model"]["status"] == "ok"
    # the embedded demo model works, and doctor says plainly what it is and how to get a real one
    assert checks["generator"]["status"] == "warn" and "demo model" in checks["generator"]["detail"]
    assert "RAG_GENERATOR_MODEL" in checks["generator"]["detail"]


@pytest.mark.slow
def test_json_log_lines(tmp_path: Path) -> None:
    done = rag("-v", "ingest", str(SAMPLES / "intranet"), "--index", str(tmp_path / "index"),
               env_extra={"RAG_LOG_FORMAT": "json"})
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)


def test_a_bad_setting_is_one_line_naming_it_and_the_allowed_values(sample_index: Path) -> None:
    done = rag("search", "lunch", "--index", str(sample_index), env_extra={"RAG_SEARCH_MODE": "hybird"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "RAG_SEARCH_MODE" in done.stderr and "'hybrid'" in done.stderr and "http" not in done.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["search", "lunch", "--mode", "hybird"], ["'--mode'", "'hybird'", "'dense', 'keyword', 'hybrid'"]),
    (["search", "lunch", "--k", "0"], ["'--k'", "greater than or equal to 1"]),
    (["ingest", "samples", "--engine", "spark"], ["'--engine'", "'local', 'ray'"]),
    (["search", "lunch", "--bogus"], ["--bogus"]),
    (["ingest"], ["FOLDER"]),
])
def test_a_bad_option_is_one_line_naming_it(args: list[str], expected: list[str]) -> None:
    done = rag(*args)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: ") and "--help" in done.stderr and "http" not in done.stderr
    for text in expected:
        assert text in done.stderr


@pytest.mark.slow
def test_help_texts_show_no_type_placeholders_or_stray_punctuation() -> None:
    for bare in ([], ["user"]):  # a command group alone shows its help, not a usage error
        done = rag(*bare)
        assert done.returncode == 0 and done.stdout.startswith("Usage: rag") and done.stderr == "", done.stderr
    for command in ("ingest", "search", "status", "ask", "check", "serve-llm", "eval", "ui", "doctor", "user add"):
        done = rag(*command.split(), "--help")
        assert done.returncode == 0, done.stderr
        assert not re.search(r"<[a-z]", done.stdout), command  # no <bool>, <path>, <list[Path]>
        assert " ." not in done.stdout and "[env RAG" not in done.stdout, command


def test_a_missing_index_says_where_indexes_are_and_what_a_documents_folder_needs(sample_index: Path,
                                                                                   tmp_path: Path) -> None:
    nearby = rag("status", "--index", str(sample_index.parent / "elsewhere"), cwd=sample_index.parent)
    assert nearby.returncode == 2 and "indexes found here: index" in nearby.stderr, nearby.stderr
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "policy.txt").write_text("Lunch is at noon.")
    mixed_up = rag("ask", "When is lunch?", "--index", str(docs), cwd=tmp_path)
    assert mixed_up.returncode == 2 and len(mixed_up.stderr.strip().splitlines()) == 1
    assert "holds documents, not an index" in mixed_up.stderr and f"rag ingest {docs} --index" in mixed_up.stderr
    assert f"--index {docs}`" not in mixed_up.stderr  # never advice to write an index into the documents


def imported(stderr: str) -> set[str]:
    """Top-level modules in `python -X importtime` output."""
    return {line.split("|")[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.slow
def test_keyword_search_and_status_load_no_model(sample_index: Path) -> None:
    for args in (["search", "parental leave", "--mode", "keyword", "--json"], ["status", "--json"]):
        done = rag(*args, "--index", str(sample_index), python=("-X", "importtime"))
        assert done.returncode == 0, done.stderr
        modules = imported(done.stderr)
        assert "torch" not in modules and "sentence_transformers" not in modules and "transformers" not in modules
    # the dense side does load a model (the check above would see it), on ONNX Runtime: not even torch
    dense = rag("search", "parental leave", "--mode", "dense", "--index", str(sample_index), python=("-X", "importtime"))
    modules = imported(dense.stderr)
    assert "onnxruntime" in modules and "torch" not in modules


@pytest.mark.slow
def test_the_terminal_shows_warnings_by_default_and_progress_with_v(sample_index: Path) -> None:
    quiet = rag("search", "lunch", "--index", str(sample_index))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    for args in (["-v", "search", "lunch"], ["search", "lunch", "-v"]):
        loud = rag(*args, "--index", str(sample_index))
        assert loud.returncode == 0 and "INFO rag.index: index version 1 loaded" in loud.stderr


@pytest.mark.slow
def test_slides_and_sheets_are_called_so(sample_index: Path) -> None:
    done = rag("search", "Where do I pick up my badge on the first day?", "--index", str(sample_index), "--json",
               "--k", "1")
    hit = json.loads(done.stdout)["hits"][0]
    assert hit["path"].endswith(".pptx") and hit["unit"] == "slide" and hit["page"] >= 1
    text = rag("search", "Business edition price per user", "--index", str(sample_index), "--k", "1").stdout
    assert "price-list-2026.xlsx, sheet 1" in text, text
    pdf = rag("search", "How long is parental leave?", "--index", str(sample_index), "--k", "1").stdout
    assert "leave-policy.pdf, page 2" in pdf


# A DocBook manual's table of contents page, as Slony-I's cmds.html: a navigation bar and a list of links,
# all of it left out as navigation
DOCBOOK_TOC = """<HTML><HEAD><TITLE>Slonik Command Summary</TITLE></HEAD><BODY><DIV CLASS="NAVHEADER"><TABLE>
<TR><TD><A HREF="index.html">Prev</A></TD><TD><A HREF="stmtecho.html">Next</A></TD></TR></TABLE></DIV>
<DIV CLASS="TOC"><DL><DT><B>Table of Contents</B></DT><DT><A HREF="stmtecho.html">ECHO</A> -- Generic output
</DT><DT><A HREF="stmtstorepath.html">STORE PATH</A> -- Configure how nodes connect</DT></DL></DIV></BODY></HTML>"""


def test_a_page_of_only_navigation_is_skipped_with_its_reason_not_failed(tmp_path: Path) -> None:
    """A table of contents or a generated index holds nothing to index: `rag ingest` says so once per reason,
    not as a failure; an empty page is still a failure; a page that turns into navigation leaves the index."""
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    (docs / "storepath.html").write_text("<html><head><title>STORE PATH</title></head><body><h1>STORE PATH</h1>"
                                         "<p>CONNRETRY sets how many seconds slon waits between two attempts "
                                         "to connect to a node.</p></body></html>")
    (docs / "cmds.html").write_text(DOCBOOK_TOC)
    (docs / "bookindex.html").write_text(
        '<html><head><title>Index</title></head><body><div class="index"><h1>Index</h1><div class="indexdiv"><h3>C'
        '</h3><dl><dt>CONNRETRY, <a href="storepath.html">STORE PATH</a></dt></dl></div></div></body></html>')
    (docs / "blank.html").write_text("<html><head><title>Nothing</title></head><body> </body></html>")
    first = rag("ingest", str(docs), "--index", str(index))
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "1 indexed" in lines[0] and "1 failed, 2 skipped" in lines[0], lines
    assert [line for line in lines if "failed:" in line] == [f"  failed: {docs / 'blank.html'}: no extractable text (empty)"]
    [skipped] = [line for line in lines if "skipped 2" in line]
    assert "only navigation" in skipped and "cmds.html" in skipped and "bookindex.html" in skipped

    (docs / "storepath.html").write_text(DOCBOOK_TOC.replace("Slonik Command Summary", "STORE PATH"))
    again = rag("ingest", str(docs), "--index", str(index), "--json")
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert sorted(Path(f["path"]).name for f in summary["nothing_to_index"]) == ["bookindex.html", "cmds.html",
                                                                                  "storepath.html"]
    assert [Path(f["path"]).name for f in summary["files_failed"]] == ["blank.html"]
    assert summary["files_skipped"] == 3 and summary["chunks_removed"] == 1  # its stored text is gone
    found = rag("search", "CONNRETRY", "--index", str(index), "--json", "--mode", "keyword")
    assert json.loads(found.stdout.strip().splitlines()[-1])["hits"] == []
