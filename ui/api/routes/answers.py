"""Search and answers: `/v1/search`, `/v1/ask`, `/v1/models` and OpenAI's `/v1/chat/completions`, each
acting as the token's user (`ctx.caller`), restricted to what that user may read, audited, and sharing the
generator fairly (an answer budget per token, a bounded wait served in turn)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response, StreamingResponse

from rag.followup import standalone_question
from rag.generation.base import GeneratorBusyError
from rag.qa import Answer, Shown, Source
from ui.api.auth import ApiError, Caller
from ui.api.context import Context, error_body
from ui.api.links import StreamNeutraliser, neutralise
from ui.api.schemas import MODEL_NAME, AskRequest, ChatRequest, SearchRequest, errors



async def iterate_closing(items: Iterator[Any]) -> AsyncIterator[Any]:
    """A blocking iterator (the model's pieces) as an async one, each step in a worker thread. When the
    consumer stops (the client went away), the iterator is closed at once, after any step in flight, so
    the generation slot is given back immediately."""
    lock = threading.Lock()
    done = object()

    def step() -> Any:
        with lock:
            return next(items, done)

    try:
        while True:
            item = await anyio.to_thread.run_sync(step)
            if item is done:
                return
            yield item
    finally:
        def close() -> None:
            with lock:
                getattr(items, "close", lambda: None)()

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close)


def sse(data: Any) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

# the answer as JSON, or with stream=true as server-sent events
STREAM: dict[int | str, dict] = {200: {"content": {"application/json": {"schema": {"type": "object"}},
                                                   "text/event-stream": {"schema": {"type": "string"}}}}}


def router(ctx: Context) -> APIRouter:
    api = APIRouter(responses=errors(400, 401, 421, 429, 503))  # every route: ctx.caller
    service, db, caller, failure, busy = ctx.service, ctx.db, ctx.caller, ctx.failure, ctx.busy
    answers, answer_limiter, answer_params, inert = ctx.answers, ctx.answer_limiter, ctx.answer_params, ctx.inert
    link_hosts = ctx.link_hosts

    # search and ask return their JSON directly: FastAPI's response-model pass over every hit's text
    # cost more than the rest of the API's work per call
    @api.post("/v1/search", tags=["answers"], response_class=JSONResponse, responses=errors(413, 415))
    def search(body: SearchRequest, who: Caller = Depends(caller)) -> JSONResponse:
        """Passages for one query or a batch, best first (`rag search --json`'s shape per query), only from
        documents the caller may read."""
        try:
            results = service.searcher.search_batch(body.texts, body.k, body.mode, who.principal, body.distinct)
        except Exception as exc:
            raise failure(exc, who) from exc
        for r in results:
            db.audit_shown(who.user.username, "searched", r.query,
                           [{"path": h.path, "page": h.page, "chunk_id": h.chunk_id} for h in r.hits])
        return JSONResponse({"results": [{"query": r.query, "hits": [{**h.metadata(), "text": h.text} for h in r.hits],
                                          "timings_ms": r.timings_ms} for r in results]})

    @api.post("/v1/ask", tags=["answers"], response_class=JSONResponse, responses=errors(413, 415, 504))
    def ask(body: AskRequest, who: Caller = Depends(caller)) -> JSONResponse:
        """Answers for one question or a batch (`rag ask --json`'s shape), each with its sources, the support
        of each sentence and whether the service abstained."""
        answer_limiter.take(who.key, len(body.texts), "questions")
        out = []
        params = answer_params(who)
        for question in body.texts:
            started = time.perf_counter()
            try:
                answer = service.ask(question, params, passages=body.passages, mode=body.mode, principal=who.principal)
            except Exception as exc:
                error = failure(exc, who)
                db.audit_answer(who.user.username, question, question, None, error.message)
                raise error from exc
            db.audit_answer(who.user.username, question, question, answer, seconds=time.perf_counter() - started)
            out.append(inert(answer.to_dict()))
        return JSONResponse({"answers": out})

    @api.get("/v1/models", tags=["answers"])
    def models(who: Caller = Depends(caller)) -> dict[str, Any]:
        """OpenAI's model list: the one model, `rag`."""
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "local"}]}

    @api.post("/v1/chat/completions", tags=["answers"], responses={**errors(404, 413, 415, 504), **STREAM})
    async def chat(body: ChatRequest, who: Caller = Depends(caller)) -> Response:
        """OpenAI-compatible: the last user message with text is the question, earlier ones make a follow-up stand
        alone (or the stored turns of `conversation_id`). The answer comes with an extra `rag` field (sources,
        support, abstention, the conversation's id); streamed, in the last chunk before `[DONE]`."""
        if body.model != MODEL_NAME:
            raise ApiError(404, f"unknown model {body.model!r}: this service has one model, {MODEL_NAME!r}",
                           "invalid_request_error")
        users_turns = [m.text for m in body.messages if m.role == "user" and m.text.strip()]
        if not users_turns:
            raise ApiError(400, "messages: no user message with text (the question) was sent")
        question = users_turns[-1].strip()
        username = who.user.username
        if body.conversation_id:
            if db.conversation(username, body.conversation_id) is None:
                raise ApiError(404, "no such conversation for this user", "not_found_error")
            history = [t.question for t in db.turns(username, body.conversation_id)]
        else:
            history = users_turns[:-1]
        searched = standalone_question(history, question)
        if len(searched) > answers.max_question_chars:
            raise ApiError(400, f"the question is longer than {answers.max_question_chars} characters "
                                "(RAG_MAX_QUESTION_CHARS): shorten it")
        answer_limiter.take(who.key, 1, "questions")
        params = answer_params(who, body.max_completion_tokens or body.max_tokens, body.temperature)
        try:
            service.generator.slots.refuse_if_full()  # before any byte, not mid-stream
        except GeneratorBusyError as exc:
            raise busy(exc) from None
        # a conversation is started only for a question that will be answered (not a refused one)
        conversation_id = body.conversation_id or db.start_conversation(username, question)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        started = time.perf_counter()

        def finish(answer: Answer | None, error: str = "", shown: list[Source] | None = None) -> dict[str, Any]:
            db.audit_answer(username, question, searched, answer, error,
                            time.perf_counter() - started if answer else None, shown)
            data = answer.to_dict() if answer else {}
            db.add_turn(username, conversation_id, question, searched, data, error)
            return {**inert(data), "searched": searched, "conversation_id": conversation_id}

        if not body.stream:
            try:
                answer = await anyio.to_thread.run_sync(
                    lambda: service.ask(searched, params, principal=who.principal))
            except Exception as exc:
                error = failure(exc, who)
                finish(None, error.message)
                raise error from exc
            extra = finish(answer)
            usage = {"prompt_tokens": 0, "completion_tokens": service.generator.count_tokens(answer.answer),
                     "total_tokens": service.generator.count_tokens(answer.answer)}
            return JSONResponse({"id": ident, "object": "chat.completion", "created": created, "model": MODEL_NAME,
                                 "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                              "message": {"role": "assistant",
                                                          "content": neutralise(answer.answer, link_hosts)}}],
                                 "usage": usage, "rag": extra})

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            return sse({"id": ident, "object": "chat.completion.chunk", "created": created, "model": MODEL_NAME,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
                        **extra})

        async def events() -> AsyncIterator[bytes]:
            streamed = ""
            answer: Answer | None = None
            shown: list[Source] = []  # the passages the answer is built from, known before its first word
            recorded = False
            outgoing = StreamNeutraliser(link_hosts)
            try:
                yield chunk({"role": "assistant", "content": ""})
                try:
                    async for item in iterate_closing(service.ask_stream(searched, params, principal=who.principal)):
                        if isinstance(item, Answer):
                            answer = item
                        elif isinstance(item, Shown):
                            shown = item.sources
                        else:
                            streamed += item
                            ready = outgoing.feed(item)
                            if ready:
                                yield chunk({"content": ready})
                except Exception as exc:  # after the headers: the error travels as OpenAI streams it
                    error = failure(exc, who)
                    recorded = True
                    finish(None, error.message)
                    yield sse(error_body(error.message, error.kind))
                    return
                assert answer is not None
                rest = outgoing.flush()
                if rest:
                    yield chunk({"content": rest})
                if answer.answer.strip() != streamed.strip():
                    # the model's text was not backed and a quote replaces it: said plainly, never silently
                    yield chunk({"content": ("\n\n" if streamed else "") + (f"{answer.note}\n\n" if answer.note else "")
                                 + neutralise(answer.answer, link_hosts)})
                recorded = True
                yield chunk({}, "stop", rag=finish(answer))
                yield b"data: [DONE]\n\n"
            finally:
                if not recorded:  # the client went away mid-answer: the question, and what it was shown, on record
                    finish(answer, "the client disconnected before the answer ended", shown if streamed else [])

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return api
