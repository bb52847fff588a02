"""The HTTP backend's own rules (its shared ones are in test_generation_contract.py): the endpoint guard,
the server's busy and silent answers, no chat template."""

from __future__ import annotations

import http.server
import time

import pytest

from rag.generation import GenerationParams, make_generator
from rag.generation.http import check_endpoint
from rag.settings import ConfigError
from tests.conftest import generator_on


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


class _Quiet(http.server.BaseHTTPRequestHandler):
    """A stand-in completions server's handler base: reads the request, logs nothing."""

    def read_request(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))

    def log_message(self, *args: object) -> None:
        pass


def test_a_silent_server_gets_a_clear_error_within_the_time_limit(make_settings) -> None:  # type: ignore[no-untyped-def]
    """A real local server that accepts the request and never answers (the dripping one is in the contract)."""

    class Silent(_Quiet):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.read_request()
            time.sleep(5)

    with generator_on(Silent, make_settings) as generator:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="within 1 s"):
            generator.generate("when", GenerationParams(max_new_tokens=5, timeout_s=1.0))
        assert time.monotonic() - started < 2.5
        generator.slots.acquire()  # the slot was given back: taking it again is not "busy"
        generator.slots.release()


def test_a_chat_template_on_the_http_backend_fails_at_start_up(make_settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="RAG_PROMPT_FORMAT=dolly"):
        make_generator(make_settings(generator_backend="http", generator_url="http://127.0.0.1:9/v1",
                                     prompt_format="chat").generation)


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
