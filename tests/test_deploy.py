"""The deployment files, checked without a Docker engine: docker-compose.yml validates and keeps every
service off the outside network, GPUs are reserved where used, models and documents are mounted
read-only, nothing downloads at start, and the command each service runs works here outside a container."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SAMPLES, free_port, wait_for_page
from ui.auth import add_user

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_validates() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("RAG_CI"):
            pytest.fail("docker-compose not found: apt-get install docker-compose")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    for profiles in ([], ["--profile", "llm", "--profile", "gpu", "--profile", "ingest", "--profile", "crawl"]):
        done = subprocess.run([tool, "-f", str(COMPOSE), *profiles, "config", "-q"], capture_output=True,
                              text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr


def test_no_service_can_reach_the_outside(compose: dict) -> None:
    networks = compose["networks"]
    assert networks["internal"]["internal"] is True
    assert networks["edge"]["driver_opts"]["com.docker.network.bridge.enable_ip_masquerade"] == "false"
    services = compose["services"]
    published = [name for name, service in services.items() if service.get("ports")]
    assert published == ["ui", "api"]
    # the crawler alone joins the operator's network to the intranet sites (external: compose creates no route)
    assert networks["intranet"]["external"] is True
    for name, service in services.items():
        assert "internal" in service["networks"], name
        if name == "crawl":
            assert service["networks"] == ["internal", "intranet"] and not service.get("ports")
            continue
        assert set(service["networks"]) <= {"internal", "edge"}, name
        if name not in published:
            assert service["networks"] == ["internal"], name
    assert services["llm"]["environment"]["VLLM_NO_USAGE_STATS"] == "1"


def test_the_postgres_profile_shares_one_database_with_every_replica(compose: dict) -> None:
    """The app database replicas on several hosts share: the official image pinned, internal network only, no
    published port, a named volume, its password from one secret file the replicas read too (never in the
    environment), and every service that opens the app database or writes the index given it."""
    services = compose["services"]
    db = services["postgres"]
    assert db["profiles"] == ["postgres"] and db["networks"] == ["internal"] and not db.get("ports")
    assert db["image"].startswith("${RAG_POSTGRES_IMAGE:-postgres:15.") and "latest" not in db["image"]
    assert db["volumes"] == ["pgdata:/var/lib/postgresql/data"] and "pgdata" in compose["volumes"]
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/app_db_password"
    assert "POSTGRES_PASSWORD" not in db["environment"] and db["user"] == "10001:10001"
    for name in ("ui", "api", "ingest", "ingest-gpu", "crawl"):
        service = services[name]
        assert service["environment"]["RAG_APP_DB"] == "${RAG_APP_DB:-/data/app/app.sqlite}", name
        secrets = [s if isinstance(s, str) else s["source"] for s in service["secrets"]]
        assert "app_db_password" in secrets, name


def test_gpus_models_and_volumes(compose: dict) -> None:
    services = compose["services"]
    for name in ("llm", "ingest-gpu"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"], name
    assert services["llm"]["profiles"] == ["llm"] and services["ingest-gpu"]["profiles"] == ["gpu"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            target = volume.split(":")[1]
            if target in ("/models", "/documents") or target.startswith("/etc/rag"):
                assert volume.endswith(":ro"), (name, volume)
    assert {"index", "app", "model-cache"} <= set(compose["volumes"])
    assert "index:/data/index" in services["ui"]["volumes"] and "app:/data/app" in services["ui"]["volumes"]


def test_the_image_installs_from_requirements_and_downloads_no_model() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "-r requirements.txt" in dockerfile and "HF_HUB_OFFLINE=1" in dockerfile
    code = "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"huggingface-cli|snapshot_download|curl |wget |git clone", code)
    assert 'CMD ["rag", "ui", "--host", "0.0.0.0", "--port", "8501"]' in dockerfile
    assert "requirements-dev" not in dockerfile  # the image carries no test tools


def test_runtime_requirements_hold_no_test_tools() -> None:
    runtime = (REPO / "requirements.txt").read_text().lower()
    for tool in ("pytest", "playwright", "fpdf2", "langchain-community"):
        assert tool not in runtime, tool
    dev = (REPO / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev and any(line.startswith("pytest==") for line in dev)


def with_defaults(text: str) -> str:
    """Compose's `${VAR:-default}` replaced by its default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def container_env(service: dict, data: Path) -> dict[str, str]:
    """The service's environment with its container paths moved under `data` and defaults filled in."""
    env = {}
    for key, value in service["environment"].items():
        value = with_defaults(str(value))
        env[key] = value.replace("/data/", f"{data}/").replace("/etc/rag/", f"{data}/etc/").replace(
            "/documents", str(data / "documents"))
    return env


def command(service: dict, data: Path) -> list[str]:
    args = [with_defaults(a) for a in service["command"]]
    return [str(Path(sys.executable).with_name(args[0])), *(a.replace("/documents", str(data / "documents"))
                                                            for a in args[1:])]


@pytest.mark.slow  # every compose service's command run here for real
def test_the_services_commands_work_here(compose: dict, tmp_path: Path, model_cache: Path) -> None:
    shutil.copytree(SAMPLES, tmp_path / "documents")
    base = {**os.environ, "RAG_DEVICE": "cpu"}

    ingest = compose["services"]["ingest"]
    assert "--watch" in command(ingest, tmp_path)  # the service keeps /documents indexed until stopped
    watcher = subprocess.Popen(command(ingest, tmp_path), env={**base, **container_env(ingest, tmp_path)},
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # its first run's summary
        assert "12 indexed" in first and (tmp_path / "index" / "manifest.json").is_file(), first
    finally:
        watcher.terminate()  # SIGTERM, as `docker compose stop` sends: it stops between batches
        assert watcher.wait(30) == 0

    ui = compose["services"]["ui"]
    env = {**base, **container_env(ui, tmp_path), "RAG_MODEL_CACHE_DIR": str(model_cache)}
    add_user(Path(env["RAG_UI_USERS_FILE"]), "ada", "correct horse", roles=["user", "admin"])
    port = free_port()
    # the container binds 0.0.0.0; here loopback is enough to prove the command starts and serves
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in command(ui, tmp_path)]
    args[args.index("--port") + 1] = str(port)
    server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_page(f"http://127.0.0.1:{port}", server)
    finally:
        server.terminate()
        server.wait(10)

    api = compose["services"]["api"]
    env = {**base, **container_env(api, tmp_path), "RAG_MODEL_CACHE_DIR": str(model_cache)}
    args = [a if a != "0.0.0.0" else "127.0.0.1" for a in command(api, tmp_path)]
    args[args.index("--port") + 1] = "0"
    server = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[4]  # "serving the API on http://127.0.0.1:N (...)"
        check = api["healthcheck"]["test"][3].replace("http://127.0.0.1:8000", url)
        assert subprocess.run([sys.executable, "-c", check], timeout=30).returncode == 0  # the health check
        assert urllib.request.urlopen(f"{url}/readyz", timeout=10).status == 200
    finally:
        server.terminate()
        server.wait(10)
