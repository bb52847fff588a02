"""`rag serve-llm`: the local generator behind an OpenAI-compatible completions endpoint.

For sites that want one shared generation process (or a GPU box) serving several front ends without
vLLM; also what the HTTP backend's tests talk to. Binds to loopback unless told otherwise.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rag.generation import GenerationParams, GeneratorBusyError, TransformersGenerator

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20


def make_handler(generator: TransformersGenerator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": generator.model_id, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            if self.path.rstrip("/") != "/v1/completions":
                self._json(404, {"error": {"message": "not found"}})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"error": {"message": f"request larger than {MAX_BODY} bytes"}})
                return
            try:
                request = json.loads(self.rfile.read(length))
                prompt = str(request["prompt"])
                params = GenerationParams(max_new_tokens=min(int(request.get("max_tokens", 200)), 4096),
                                          temperature=float(request.get("temperature", 0.0)),
                                          timeout_s=generator.settings.generation_timeout_s)
            except (ValueError, KeyError, TypeError) as exc:
                self._json(400, {"error": {"message": f"bad request: {exc}"}})
                return
            ident = f"cmpl-{uuid.uuid4().hex[:12]}"
            try:
                pieces = generator.stream(prompt, params)
                first = next(pieces, None)  # raises GeneratorBusyError before any byte is sent
            except GeneratorBusyError as exc:
                self._json(429, {"error": {"message": str(exc)}})
                return
            if not request.get("stream"):
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


def serve(generator: TransformersGenerator, host: str, port: int) -> None:
    """Serve until interrupted."""
    generator.warm_up()
    server = ThreadingHTTPServer((host, port), make_handler(generator))
    log.info("serving %s on http://%s:%d/v1", generator.model_id, host, server.server_address[1])
    print(f"serving {generator.model_id} on http://{host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
