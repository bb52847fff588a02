"""The suite runs with sockets disabled except loopback (pytest-socket): prove the guard is on."""

from __future__ import annotations

import socket

import pytest
from pytest_socket import SocketBlockedError, SocketConnectBlockedError


def test_outside_connections_are_blocked() -> None:
    with pytest.raises((SocketBlockedError, SocketConnectBlockedError)):
        socket.create_connection(("203.0.113.1", 443), timeout=1)


def test_embedding_and_search_need_no_network(embedder) -> None:  # type: ignore[no-untyped-def]
    # the model was loaded with sockets blocked (conftest fixture): nothing reached for a hub
    assert embedder.embed_batch(["offline"]).shape == (1, 384)
