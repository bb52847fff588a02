"""`rag serve-llm`: the local generator behind an OpenAI-compatible completions endpoint.

For sites that want one shared generation process (or a GPU box) serving several front ends without
vLLM; also what the HTTP backend's tests talk to. Binds to loopback unless told otherwise.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import math
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rag.generation.base import GenerationParams, Generator, GeneratorBusyError
from rag.network import is_loopback
from rag.settings import ConfigError

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
MAX_TOKENS = 4096
MAX_STOPS = 4  # OpenAI's limit, which clients respect
SOCKET_TIMEOUT_S = 30.0  # a client that stops sending (or reading) loses its connection, not a thread


class BadRequest(ValueError):
    """A request this server will not run; the message says which field is wrong."""


@dataclass(frozen=True)
class CompletionRequest:
    prompt: str
    stream: bool
    params: GenerationParams


def parse_request(body: bytes, timeout_s: float) -> CompletionRequest:
    """A completions request, each field checked (OpenAI's names: prompt, max_tokens, temperature,
    stop as a string or up to four strings, stream)."""
    try:
        request = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON ({exc})") from exc
    if not isinstance(request, dict) or not isinstance(request.get("prompt"), str):
        raise BadRequest("'prompt' (a string) is required")
    max_tokens = request.get("max_tokens", 200)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
        raise BadRequest(f"'max_tokens' must be an integer from 1 to {MAX_TOKENS}")
    temperature = request.get("temperature", 0.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or \
            not math.isfinite(temperature) or not 0 <= temperature <= 2:
        raise BadRequest("'temperature' must be a number from 0 to 2")
    stop = request.get("stop") or []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or \
            not all(isinstance(s, str) and 0 < len(s) <= 200 for s in stops):
        raise BadRequest(f"'stop' must be a string or a list of at most {MAX_STOPS} strings")
    return CompletionRequest(request["prompt"], bool(request.get("stream")), GenerationParams(
        max_new_tokens=max_tokens, temperature=float(temperature), timeout_s=timeout_s, stops=tuple(stops)))


def make_handler(generator: Generator, timeout_s: float, token: str = "") -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = SOCKET_TIMEOUT_S

        def _authorized(self) -> bool:
            if not token:
                return True
            given = self.headers.get("Authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return True
            self.close_connection = True
            self._json(401, {"error": {"message": "missing or wrong bearer token"}})
            return False

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            log.info("%s %s", self.address_string(), format % args)

        def _json(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if not self._authorized():
                return
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": generator.model_id, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            if not self._authorized():
                return
            if self.path.rstrip("/") != "/v1/completions":
                self._json(404, {"error": {"message": "not found"}})
                return
            raw_length = self.headers.get("Content-Length", "")
            if not raw_length.isdigit():  # absent, negative or not a number: never "read until closed"
                self.close_connection = True
                self._json(411 if not raw_length else 400, {"error": {"message": "a Content-Length is required"}})
                return
            length = int(raw_length)
            if length > MAX_BODY:
                self.close_connection = True
                self._json(413, {"error": {"message": f"request larger than {MAX_BODY} bytes"}})
                return
            try:
                request = parse_request(self.rfile.read(length), timeout_s)
            except BadRequest as exc:
                self._json(400, {"error": {"message": f"bad request: {exc}"}})
                return
            ident = f"cmpl-{uuid.uuid4().hex[:12]}"
            try:
                pieces = generator.stream(request.prompt, request.params)
                first = next(pieces, None)  # raises GeneratorBusyError before any byte is sent
            except GeneratorBusyError as exc:
                self._json(429, {"error": {"message": str(exc)}})
                return
            if not request.stream:
                text = (first or "") + "".join(pieces)
                self._json(200, {"id": ident, "object": "text_completion", "created": int(time.time()),
                                 "model": generator.model_id,
                                 "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for piece in itertools.chain([first] if first else [], pieces):
                event = {"id": ident, "object": "text_completion", "model": generator.model_id,
                         "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


class BoundedServer(ThreadingHTTPServer):
    """A threading server with at most `max_connections` connections at once; more get a 503 at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = 32) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active = 0
        self._count_lock = threading.Lock()

    @property
    def active_connections(self) -> int:
        """Connections being served now (for health output and for tests that must not race the release)."""
        with self._count_lock:
            return self._active

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._count_lock:
            self._active += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self._active -= 1
            self._slots.release()


def make_server(generator: Generator, host: str, port: int, token: str = "", max_connections: int = 32,
                timeout_s: float = 60.0) -> BoundedServer:
    """The server (not yet serving); refuses to listen beyond loopback without a token."""
    if not token and not is_loopback(host):
        raise ConfigError(f"serving on {host} beyond loopback needs a token: set RAG_LLM_SERVER_TOKEN (and "
                          "RAG_GENERATOR_API_KEY to the same value on the clients)")
    return BoundedServer((host, port), make_handler(generator, timeout_s, token), max_connections)


def serve(generator: Generator, host: str, port: int, token: str = "", timeout_s: float = 60.0) -> None:
    """Serve until interrupted."""
    server = make_server(generator, host, port, token, timeout_s=timeout_s)
    generator.warm_up()
    log.info("serving %s on http://%s:%d/v1", generator.model_id, host, server.server_address[1])
    print(f"serving {generator.model_id} on http://{host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
