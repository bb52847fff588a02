"""The API keeps its OpenAPI contract (issue 26): Schemathesis (a pinned version) drives a running `rag api`
over a throwaway index with a read token and an admin token, every check on (status codes, content types
and response schemas as documented, schema-valid requests accepted, invalid ones refused, Allow headers,
authentication), examples capped so it fits CI. 0 failures and no 5xx.

Attackers it stands for: a token holder or an anonymous client sending any body, parameter or method.
tests/schemathesis.toml records the deliberate choices a check would otherwise count as failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from ingest.job import run_ingest
from rag.settings import load_settings
from tests.conftest import REPO, rag_cli, serve_api, tiny_dolly, write_acl_corpus
from ui.auth import add_user

pytestmark = pytest.mark.slow
SCHEMATHESIS = REPO / ".venv" / "bin" / "schemathesis"
MAX_EXAMPLES = 10  # per operation and phase: about 800 requests per token, a few seconds each run


def test_the_running_api_keeps_its_openapi_contract(tmp_path: Path, embedder, model_cache: Path) -> None:  # type: ignore[no-untyped-def]
    docs = write_acl_corpus(tmp_path / "docs")
    users = tmp_path / "users.yaml"
    add_user(users, "ada", "ada password", "Ada", ["user", "admin"])
    add_user(users, "sam", "sam password", "Sam", ["user"], ["sales"])
    index = tmp_path / "index"
    run_ingest(load_settings(index_dir=index, device="cpu"), [docs], embedder=embedder, progress=False)
    # a tiny generator answers in milliseconds: the contract is under test, not the answers; budgets raised for
    # the run (their 429s are tested in tests/test_api.py)
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache), "RAG_UI_USERS_FILE": str(users),
           "RAG_APP_DB": str(tmp_path / "app.sqlite"), "RAG_GENERATOR_MODEL": str(tiny_dolly(tmp_path / "m", "yes")),
           "RAG_API_RATE_PER_MINUTE": "1000000", "RAG_API_ANSWERS_PER_MINUTE": "1000000",
           "RAG_UI_ALLOWED_ROOTS": json.dumps([str(docs)])}
    tokens = {who: rag_cli("token", "create", f"{who}-contract", "--user", who,
                           *(["--scope", "admin"] if who == "ada" else []), env=env).strip() for who in ("sam", "ada")}
    with serve_api(tmp_path, index, env) as url:
        for who, token in tokens.items():
            done = subprocess.run(
                [str(SCHEMATHESIS), "--config-file", str(REPO / "tests" / "schemathesis.toml"), "--no-color", "run",
                 f"{url}/openapi.json", "--header", f"Authorization: Bearer {token}", "--checks", "all",
                 "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
                 "--seed", "1", "--suppress-health-check", "all", "--request-timeout", "60"],
                capture_output=True, text=True, timeout=900, cwd=tmp_path)
            assert done.returncode == 0, f"{who}'s token:\n{done.stdout[-20000:]}\n{done.stderr[-2000:]}"
            counts = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
            assert counts and counts[1] == counts[2] and int(counts[1]) > 500, done.stdout[-3000:]
            if who == "ada":  # the admin routes were exercised, not only refused
                assert "returned only 401/403" not in done.stdout, done.stdout[-3000:]
    log = (tmp_path / "api.log").read_text()
    assert "Traceback" not in log and "request failed" not in log, log[-5000:]
