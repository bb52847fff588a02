"""No egress: the suite runs with sockets disabled except loopback (pytest-socket), and the service's
own work (loading the models, ingesting, searching, answering) attempts no connection at all, not even
one a library would catch and silently fall back from."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pytest_socket import SocketBlockedError, SocketConnectBlockedError

from ingest.job import run_ingest
from rag.embedding import SentenceTransformerEmbedder
from rag.qa import build_service
from rag.settings import load_settings
from tests.conftest import SAMPLES


def test_outside_connections_are_blocked() -> None:
    with pytest.raises((SocketBlockedError, SocketConnectBlockedError)):
        socket.create_connection(("203.0.113.1", 443), timeout=1)


@pytest.mark.slow
def test_loading_ingesting_searching_and_answering_attempt_no_connection(
        tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        attempts.append(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        attempts.append(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        attempts.append(("dns", host))
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises((SocketBlockedError, SocketConnectBlockedError)):
        socket.create_connection(("203.0.113.1", 443), timeout=1)
    assert attempts, "the recorder must see an attempt"
    attempts.clear()
    settings = load_settings(index_dir=tmp_path / "index", device="cpu", model_cache_dir=model_cache,
                             max_new_tokens=8)
    embedder = SentenceTransformerEmbedder(settings.embedding)  # a fresh load, not the session's model
    embedder.warm_up()
    summary = run_ingest(settings, [SAMPLES], embedder=embedder, progress=False)
    service = build_service(settings)
    answer = service.ask("When is lunch served in the cafeteria?")
    assert summary.files_indexed > 10 and answer.sources
    assert attempts == []
