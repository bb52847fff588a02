"""The HTTP backend: an on-prem server speaking the OpenAI-compatible completions API (vLLM, TGI, llama.cpp,
`rag serve-llm`).

The endpoint must be on loopback or a private network unless settings explicitly allow otherwise, so
a mistyped URL cannot send questions and documents out of the organization.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rag.generation.base import GenerationParams, GeneratorBusyError
from rag.network import is_ip, is_private_address
from rag.settings import ConfigError, GenerationSettings

if TYPE_CHECKING:
    import httpx

MAX_SERVER_STOPS = 4  # OpenAI's API takes at most four stop strings; the wrapper applies all of them anyway
CHARS_PER_TOKEN = 3  # conservative: English runs ~4 characters a token, so the window is never overrun


def check_endpoint(url: str, allow_public: bool) -> None:
    """Refuse a generator URL whose host is not loopback or a private address (unless allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"generator URL {url!r} is not an http(s) URL (e.g. http://10.0.0.5:8000/v1)")
    if allow_public:
        return
    host = parts.hostname
    try:
        addresses = [host] if is_ip(host) else sorted({i[4][0] for i in socket.getaddrinfo(host, parts.port or 80)})
    except socket.gaierror as exc:
        raise ConfigError(f"generator host {host} does not resolve ({exc.strerror}); use an address on "
                          "your network") from exc
    public = [a for a in addresses if not is_private_address(a)]
    if public:
        raise ConfigError(
            f"generator URL {url} reaches {', '.join(public)}, outside loopback and private networks: "
            "questions and documents would leave the organization. Use an on-prem server, or set "
            "RAG_ALLOW_PUBLIC_ENDPOINT=true if this is really intended")


class _OnPremBackend:
    """httpcore's socket backend, refusing a connection whose peer is outside the on-prem networks.

    The URL is checked at start-up, but a name can resolve elsewhere later (DNS rebinding, a changed
    record): this checks the address each connection actually reached, before a byte is sent.
    """

    def __init__(self) -> None:
        import httpcore

        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: object = None) -> object:
        import httpcore

        stream = self._backend.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                           socket_options=socket_options)
        sock = stream.get_extra_info("socket")
        peer = sock.getpeername()[0] if sock is not None else ""
        if not peer or not is_private_address(peer):
            stream.close()
            raise httpcore.ConnectError(
                f"{host} now resolves to {peer or 'an unknown address'}, outside loopback and private networks: "
                "refused, nothing was sent (set RAG_ALLOW_PUBLIC_ENDPOINT=true if this is really intended)")
        return stream

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: object = None) -> object:
        return self._backend.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def on_prem_transport() -> "httpx.HTTPTransport":
    """An httpx transport whose every connection is checked by `_OnPremBackend`."""
    import httpcore
    import httpx

    transport = httpx.HTTPTransport(trust_env=False)
    # httpx does not expose httpcore's network backend; the pool it built is replaced by one with ours
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=_OnPremBackend())
    return transport


class HttpBackend:
    """Streams completions from an OpenAI-compatible server; the prompt is sent as text, already rendered."""

    chat_template_known = False  # the server applies no template to a completions prompt
    is_demo = False
    device = "remote"

    def __init__(self, settings: GenerationSettings) -> None:
        if not settings.url:
            raise ConfigError("RAG_GENERATOR_BACKEND=http needs RAG_GENERATOR_URL (e.g. http://10.0.0.5:8000/v1)")
        check_endpoint(settings.url, settings.allow_public_endpoint)
        self.url = settings.url.rstrip("/")
        self.remote_model = settings.remote_model
        self.model_id = f"{self.remote_model or 'remote'}@{urlsplit(self.url).netloc}"
        self.context_window = settings.context_tokens
        self.allow_public = settings.allow_public_endpoint
        self._headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}

    def warm_up(self) -> None:
        """Nothing to load locally."""

    def chat_prompt(self, message: str) -> str:
        raise ConfigError("the HTTP backend cannot render a chat template: set RAG_PROMPT_FORMAT=dolly")

    def count_tokens(self, text: str) -> int:
        return -(-len(text) // CHARS_PER_TOKEN)

    def truncate(self, text: str, tokens: int) -> str:
        return text[: tokens * CHARS_PER_TOKEN]

    def client(self, timeout_s: float) -> "httpx.Client":
        """A client that sends the token and, unless public endpoints are allowed, reaches only on-prem
        addresses; trust_env=False: no proxy from the environment may carry the request elsewhere."""
        import httpx

        transport = None if self.allow_public else on_prem_transport()
        return httpx.Client(timeout=timeout_s, trust_env=False, transport=transport, headers=self._headers)

    def produce(self, prompt: str, params: GenerationParams, stops: Sequence[str],
                cancel: threading.Event) -> Generator[str, None, None]:
        """Completion text pieces (server-sent events); closing this generator closes the connection, which
        ends the generation on the server. Raises GeneratorBusyError when the server is at its bound."""
        import httpx

        body = {"prompt": prompt, "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                "stream": True, "stop": list(stops[:MAX_SERVER_STOPS])}
        if self.remote_model:
            body["model"] = self.remote_model
        deadline = time.monotonic() + params.timeout_s  # in total: a server dripping tokens may not hold a slot
        try:
            with self.client(params.timeout_s) as client, \
                    client.stream("POST", f"{self.url}/completions", json=body) as response:
                if response.status_code in (429, 503):  # the server's own bound: the same "busy" as ours
                    raise GeneratorBusyError(f"the generator server at {self.url} is busy (HTTP "
                                             f"{response.status_code}); try again in a moment")
                if response.status_code == 401:
                    raise ConfigError(f"the generator server at {self.url} refused the request (HTTP 401): set "
                                      "RAG_GENERATOR_API_KEY to its token")
                if response.status_code != 200:
                    raise RuntimeError(f"generator server answered HTTP {response.status_code}: "
                                       f"{response.read().decode(errors='replace')[:200]}")
                for line in response.iter_lines():
                    if cancel.is_set() or time.monotonic() > deadline:
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    text = json.loads(data)["choices"][0].get("text", "")
                    if text:
                        yield text
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"the generator server did not answer within {params.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise ConnectionError(f"the generator server at {self.url} cannot be reached ({exc}): start it, or "
                                  f"check RAG_GENERATOR_URL") from exc
