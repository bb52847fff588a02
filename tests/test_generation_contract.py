"""The contract every generation backend passes behind the wrapper (as Haystack's document-store mixins):
streams in pieces, is busy when its slots are taken, stops at Dolly's "### End" and at a request's own
stop strings, honours the time limit (ending quietly, or failing when asked) and frees its slot when the
consumer stops early. Run against the in-process backend (a tiny model),
the HTTP backend (a real `rag serve-llm` process, and a real dripping server for the time limit) and
the scripted backend the fast tests use; a new backend adds a subclass here."""

from __future__ import annotations

import http.server
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rag.generation.cleanup
from rag.generation import GenerationParams, GenerationTimeoutError, Generator, GeneratorBusyError, make_generator
from rag.prompt import END_KEY
from tests.conftest import generator_on, scripted_generator, serve_llm, tiny_dolly

PROMPT_ARGS = ("when is lunch", "[1] lunch is noon")


class GeneratorContract:
    """Subclasses provide three fixtures, each a `Generator` with one slot and no queue:
    `talker` (its model answers with several words), `ender` (its model's first output is Dolly's
    "### End") and `endless` (its model would write for far longer than `time_limit_s`)."""

    time_limit_s = 1.0
    endless_tokens = 500

    def test_streams_in_pieces(self, talker: Generator) -> None:
        pieces = list(talker.stream(talker.render(*PROMPT_ARGS), GenerationParams(max_new_tokens=4)))
        assert len(pieces) >= 2 and "".join(pieces).strip()

    def test_is_busy_when_its_slots_are_taken(self, talker: Generator) -> None:
        talker.slots.acquire()  # another question is being answered
        try:
            with pytest.raises(GeneratorBusyError, match="busy"):
                talker.generate(talker.render(*PROMPT_ARGS), GenerationParams(max_new_tokens=2))
        finally:
            talker.slots.release()
        assert talker.generate(talker.render(*PROMPT_ARGS), GenerationParams(max_new_tokens=2)).strip()

    def test_stops_at_dollys_end(self, ender: Generator) -> None:
        prompt = ender.render(*PROMPT_ARGS)
        assert prompt.endswith("### Response:\n")
        answer = ender.generate(prompt, GenerationParams(max_new_tokens=20))
        assert END_KEY not in answer and len(answer.split()) <= 1

    def test_honours_the_time_limit(self, endless: Generator) -> None:
        started = time.monotonic()
        answer = endless.generate(endless.render(*PROMPT_ARGS),
                                  GenerationParams(max_new_tokens=self.endless_tokens, timeout_s=self.time_limit_s))
        assert time.monotonic() - started < self.time_limit_s + 1.5
        assert 0 < len(answer.split()) < self.endless_tokens  # what came before the limit, not an error

    def test_fails_on_the_time_limit_when_asked(self, endless: Generator) -> None:
        params = GenerationParams(max_new_tokens=self.endless_tokens, timeout_s=self.time_limit_s,
                                  fail_on_time_limit=True)
        with pytest.raises(GenerationTimeoutError) as caught:
            endless.generate(endless.render(*PROMPT_ARGS), params)
        assert 0 < len(caught.value.text.split()) < self.endless_tokens
        endless.slots.acquire()  # given back despite the error
        endless.slots.release()

    def test_stops_at_the_requests_own_stop_strings(self, talker: Generator) -> None:
        prompt = talker.render(*PROMPT_ARGS)
        whole = talker.generate(prompt, GenerationParams(max_new_tokens=8))
        assert len(whole.strip()) >= 5, whole
        stop = whole.strip()[2:5]  # greedy decoding: the same text comes again, cut where this begins
        cut = talker.generate(prompt, GenerationParams(max_new_tokens=8, stops=(stop,)))
        assert cut == whole[:whole.index(stop)]

    def test_frees_its_slot_when_the_consumer_stops_early(self, talker: Generator) -> None:
        stream = talker.stream(talker.render(*PROMPT_ARGS), GenerationParams(max_new_tokens=50))
        assert next(stream)
        stream.close()  # type: ignore[attr-defined]  # a page closed mid-answer
        talker.slots.acquire()  # one slot, no queue: this raises GeneratorBusyError if it was kept
        talker.slots.release()


class TestScriptedBackend(GeneratorContract):
    time_limit_s = 0.3

    @pytest.fixture()
    def talker(self) -> Generator:
        return scripted_generator("Lunch is served from noon to two in the cafeteria on the second floor.")

    @pytest.fixture()
    def ender(self) -> Generator:
        return scripted_generator(f"{END_KEY} and then more words that must not be shown")

    @pytest.fixture()
    def endless(self) -> Generator:
        return scripted_generator(" ".join(f"word{i}" for i in range(1000)), delay_s=0.01)

    def test_stop_strings_split_across_pieces_are_cut(self) -> None:
        generator = scripted_generator("Lunch is at noon. ### End Ignore this.")
        assert generator.generate("q", GenerationParams()) == "Lunch is at noon. "

    def test_every_backend_stream_is_closed(self) -> None:
        generator = scripted_generator("one two three four five six")
        stream = generator.stream("q", GenerationParams())
        next(stream)
        stream.close()
        generator.generate("q", GenerationParams())
        assert generator.backend.closed == 2


class TestTransformersBackend(GeneratorContract):
    time_limit_s = 0.05
    endless_tokens = 300

    @pytest.fixture()
    def make(self, make_settings, tmp_path: Path) -> Callable[[str], Generator]:  # type: ignore[no-untyped-def]
        def make(always: str) -> Generator:
            model = tiny_dolly(tmp_path / always.replace(" ", "_").replace("#", "h"), always)
            return make_generator(make_settings(generator_model=str(model), max_concurrent_generations=1).generation)
        return make

    @pytest.fixture()
    def talker(self, make: Callable[[str], Generator]) -> Generator:
        return make("yes")

    @pytest.fixture()
    def ender(self, make: Callable[[str], Generator]) -> Generator:
        return make(END_KEY)

    @pytest.fixture()
    def endless(self, make: Callable[[str], Generator], monkeypatch: pytest.MonkeyPatch) -> Generator:
        # the tiny model says "yes" forever: without the loop cut only the time limit stops it
        monkeypatch.setattr(rag.generation.cleanup, "repetition_cut", lambda text: None)
        generator = make("yes")
        generator.warm_up()
        return generator


class _Drip(http.server.BaseHTTPRequestHandler):
    """A completions server that sends a new word every 0.1 s for a minute."""

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for i in range(600):  # distinct words: a repeated one would be cut as a loop first
                self.wfile.write(b'data: {"choices": [{"text": "word%d "}]}\n\n' % i)
                self.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow  # real servers in subprocesses
class TestHttpBackend(GeneratorContract):
    @pytest.fixture(scope="class")
    def yes_server(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        yield from serve_llm(tiny_dolly(tmp_path_factory.mktemp("yes"), "yes"))

    @pytest.fixture(scope="class")
    def end_server(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        yield from serve_llm(tiny_dolly(tmp_path_factory.mktemp("end"), END_KEY))

    @pytest.fixture()
    def talker(self, yes_server: str, make_settings) -> Generator:  # type: ignore[no-untyped-def]
        return make_generator(make_settings(generator_backend="http", generator_url=yes_server).generation)

    @pytest.fixture()
    def ender(self, end_server: str, make_settings) -> Generator:  # type: ignore[no-untyped-def]
        return make_generator(make_settings(generator_backend="http", generator_url=end_server).generation)

    @pytest.fixture()
    def endless(self, make_settings) -> Iterator[Generator]:  # type: ignore[no-untyped-def]
        with generator_on(_Drip, make_settings) as generator:
            yield generator
