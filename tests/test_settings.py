"""The settings object: built once, immutable, read by each component through its own section."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from rag.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("embedding", "index", "search", "ingest", "rerank", "answers", "generation", "page", "api", "audit")
# the places that assemble parts and so hold the whole object; every other function takes a section
COMPOSITION_ROOTS = {"build_searcher", "build_service", "evaluate_retrieval", "run_ingest", "run_questions",
                     "run_eval", "run_folder_questions"}


def test_sections_are_frozen_and_carry_the_configured_values(tmp_path: Path) -> None:
    s = load_settings(index_dir=tmp_path / "ix", device="cpu", search_mode="keyword", answer_passages=3,
                      parse_workers=4, reranker_model="/models/ce", generator_backend="http",
                      generator_url="http://10.0.0.5:8000/v1", ui_allowed_hosts=["qa.example.org"],
                      audit_retention_days=7, embed_batch_size=16, generation_timeout_s=9)
    assert (s.index.dir, s.index.device) == (tmp_path / "ix", "cpu")
    assert (s.search.mode, s.answers.passages, s.ingest.parse_workers) == ("keyword", 3, 4)
    assert (s.rerank.model, s.generation.backend, s.generation.url) == ("/models/ce", "http",
                                                                        "http://10.0.0.5:8000/v1")
    assert (s.page.allowed_hosts, s.audit.retention_days) == (("qa.example.org",), 7)
    assert (s.embedding.batch_size, s.embedding.device, s.answers.timeout_s) == (16, "cpu", 9)
    for name in SECTIONS:
        section = getattr(s, name)
        assert dataclasses.is_dataclass(section)
        first = dataclasses.fields(section)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, first, None)
    with pytest.raises(Exception, match="frozen"):
        s.index_dir = tmp_path  # type: ignore[misc]


def test_components_take_a_section_not_the_whole_settings() -> None:
    """Outside the entry points (ui/) and the composition roots, no function or constructor accepts the
    flat `Settings`: a reader of a part sees from its signature which section it depends on."""
    offenders = []
    for path in sorted([*REPO.glob("rag/**/*.py"), *REPO.glob("ingest/**/*.py")]):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            if any(a.annotation is not None and "Settings" in ast.unparse(a.annotation).split(" | ")
                   for a in args) and node.name not in COMPOSITION_ROOTS:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert not offenders, offenders


def test_every_setting_reaches_a_section_or_an_entry_point() -> None:
    """A new RAG_* setting must be read somewhere: through a section, or by an entry point by name."""
    settings_source = (REPO / "rag" / "settings.py").read_text()
    sections_source = settings_source[settings_source.index("def embedding(self)"):]
    entry_points = "".join(p.read_text() for p in REPO.glob("ui/**/*.py"))
    unread = [name for name in Settings.model_fields
              if f"self.{name}" not in sections_source and f"settings.{name}" not in entry_points]
    assert not unread, unread


def test_a_database_url_is_refused_not_taken_for_a_path(tmp_path: Path) -> None:
    """RAG_APP_DB=postgresql://… used to create a folder "postgresql:" per replica and keep going; another URL
    is refused, and a password in the URL is refused without being repeated (it would reach logs)."""
    import os
    import subprocess
    import sys

    rag = Path(sys.executable).with_name("rag")
    for url, said in (("mysql://rag@db:3306/ragapp", "mysql:// is not supported"),
                      ("postgresql://rag:hunter2@db:5432/ragapp", "RAG_APP_DB holds a password")):
        done = subprocess.run([str(rag), "status"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                              env={**os.environ, "RAG_APP_DB": url})
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "hunter2" not in done.stderr + done.stdout
        assert not list(tmp_path.iterdir())  # nothing written where the URL pointed
