"""The HTTP generator against a real `rag serve-llm` process on loopback, and the endpoint guard."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rag.generation import GenerationParams
from rag.http_generation import HttpGenerator, check_endpoint
from rag.settings import ConfigError
from tests.conftest import REPO
from tests.test_answer import tiny_dolly


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://10.1.2.3:8000/v1", "http://192.168.0.7/v1",
                                 "http://[::1]:8000/v1", "http://localhost:8000/v1"])
def test_on_prem_endpoints_are_accepted(url: str) -> None:
    check_endpoint(url, allow_public=False)


@pytest.mark.parametrize("url", ["http://8.8.8.8/v1", "https://203.0.113.9/v1", "http://[2001:4860::8888]/v1",
                                 "http://169.254.169.254/v1", "http://[::ffff:8.8.8.8]/v1"])
def test_public_endpoints_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="outside loopback and private networks"):
        check_endpoint(url, allow_public=False)
    check_endpoint(url, allow_public=True)  # only when explicitly allowed


def test_unresolvable_and_malformed_endpoints_are_refused() -> None:
    with pytest.raises(ConfigError, match="does not resolve|outside"):
        check_endpoint("http://llm.invalid/v1", allow_public=False)
    with pytest.raises(ConfigError, match="not an http"):
        check_endpoint("ftp://10.0.0.1/v1", allow_public=False)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    model = tiny_dolly(tmp_path / "model", "yes")
    env = dict(os.environ, PYTHONPATH=str(REPO), RAG_DEVICE="cpu", RAG_GENERATOR_MODEL=str(model))
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "serve-llm", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "serving <model> on http://127.0.0.1:<port>/v1"
        assert "serving" in line, line
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        proc.terminate()
        proc.wait(10)


def test_streams_from_a_real_local_server(server: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    generator = HttpGenerator(make_settings(generator_backend="http", generator_url=server))
    pieces = list(generator.stream(generator.render("when is lunch", "[1] lunch is noon"),
                                   GenerationParams(max_new_tokens=4)))
    assert "".join(pieces).split() == ["yes"] * 4 and len(pieces) >= 2  # arrived in pieces
    assert generator.model_id.endswith(server.split("//")[1].split("/")[0])


def test_busy_bound_applies_to_the_http_backend(server: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    from rag.generation import GeneratorBusyError

    generator = HttpGenerator(make_settings(generator_backend="http", generator_url=server))
    generator._slots.acquire()
    with pytest.raises(GeneratorBusyError):
        generator.generate("x", GenerationParams(max_new_tokens=1))
    generator._slots.release()
    started = time.monotonic()
    assert generator.generate("when", GenerationParams(max_new_tokens=2)).split() == ["yes", "yes"]
    assert time.monotonic() - started < 30


class _Quiet(http.server.BaseHTTPRequestHandler):
    """A stand-in completions server's handler base: reads the request, logs nothing."""

    def read_request(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def generator_on(handler: type[http.server.BaseHTTPRequestHandler], make_settings) -> Iterator[HttpGenerator]:  # type: ignore[no-untyped-def]
    """An HTTP generator pointed at a real local server running `handler`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield HttpGenerator(make_settings(generator_backend="http",
                                          generator_url=f"http://127.0.0.1:{server.server_port}/v1"))
    finally:
        server.shutdown()


def test_a_slow_server_gets_a_clear_error_within_the_time_limit(make_settings) -> None:  # type: ignore[no-untyped-def]
    """A real (deliberately slow) local server that drips one token every 0.3 s, forever."""

    class Drip(_Quiet):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.read_request()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for i in range(100):  # distinct words: a repeated one would be cut as a loop first
                    self.wfile.write(b'data: {"choices": [{"text": "word%d "}]}\n\n' % i)
                    self.wfile.flush()
                    time.sleep(0.3)
            except (BrokenPipeError, ConnectionResetError):
                pass

    with generator_on(Drip, make_settings) as generator:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="within 1 s"):
            generator.generate("when", GenerationParams(max_new_tokens=500, timeout_s=1.0))
        assert time.monotonic() - started < 2.5
        generator._slots.acquire()  # the slot was given back: taking it again is not "busy"
        generator._slots.release()


def test_a_busy_server_is_reported_as_busy(make_settings) -> None:  # type: ignore[no-untyped-def]
    """A real local server answering 429, as `rag serve-llm` does beyond its own bound."""
    from rag.generation import GeneratorBusyError

    class Busy(_Quiet):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.read_request()
            self.send_response(429)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    with generator_on(Busy, make_settings) as generator, pytest.raises(GeneratorBusyError, match="busy"):
        generator.generate("when", GenerationParams(max_new_tokens=5))
