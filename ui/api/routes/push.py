"""Documents other systems push: `PUT` and `DELETE /v1/sources/{source}/documents/{external_id}`, with an ingest
token (`rag token create NAME --user U --scope ingest [--source S]`), which can push but never read.

A push is answered once it is durable in the queue (ingest/push.py): 201 created, 200 replaced, 204 unchanged
(the same bytes and readers as stored or queued: nothing is queued, nothing embedded). It is searchable after
the next commit, every RAG_API_PUSH_INTERVAL_S, or before the answer with `?publish=true`. Every push and
deletion is audited (who, which document, the outcome).
"""

from __future__ import annotations

import base64
import binascii
import os
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ingest.push import MAX_EXTERNAL_ID, SOURCE_NAME, Entry, content_hash, push_key
from rag.index import IndexNotFoundError
from rag.settings import SUPPORTED_EXTENSIONS
from rag.types import LOGIN_READER
from ui.api.auth import ApiError, Caller
from ui.api.context import Context
from ui.api.schemas import errors

PUBLISH_WAIT_S = 120.0


_BASE64 = r"^(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$|^[A-Za-z0-9+/]{2}==$|^[A-Za-z0-9+/]{3}=$"
# the extension in either case, spelled out per letter: JSON Schema's patterns have no case-insensitive flag
_FILENAME = r"^[^/\\]*\.(" + "|".join(sorted("".join(f"[{c.lower()}{c.upper()}]" for c in e.lstrip("."))
                                              for e in SUPPORTED_EXTENSIONS)) + ")$"
_READER = r"^[\w.@-]{1,128}$"


class PushBody(BaseModel):
    """A document: its text (or its file, base64, with its name), where it lives and who may read it."""

    # exactly one of text and content_base64, a file with its name (said in the schema, checked in _one_of)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["text"], "not": {"required": ["content_base64"]}},
        {"required": ["content_base64", "filename"], "not": {"required": ["text"]}}]})

    # typed without None: an explicit null is refused like a wrong type; left out, the field is None
    title: str = Field("", max_length=1000, description="Its title (for text; a file's own title is read from it)")
    text: str = Field(None, min_length=1, pattern=r"\S",  # type: ignore[assignment]
                      description="Its text (plain text or Markdown); or content_base64")
    content_base64: str = Field(None, min_length=4, pattern=_BASE64,  # type: ignore[assignment]
                                description="The file's bytes, base64, with filename")
    filename: str = Field(None, max_length=255, pattern=_FILENAME,  # type: ignore[assignment]
                          description="The file's name: its extension says how it is read")
    url: str = Field(None, max_length=4096, pattern=r"^https?://\S+$",  # type: ignore[assignment]
                     description="Where it lives in its own system")
    modified: datetime = Field(None, description="When it last changed (RFC 3339)")  # type: ignore[assignment]
    groups: list[Annotated[str, Field(pattern=_READER)]] = Field(default_factory=list, max_length=1000,
                                                                 description="Groups that may read it")
    users: list[Annotated[str, Field(pattern=_READER)]] = Field(
        default_factory=list, max_length=1000, description="Users that may read it, by their sign-in name")

    @field_validator("modified", mode="before")
    @classmethod
    def _text_date(cls, value: object) -> object:
        if not isinstance(value, str):  # a number is not RFC 3339 (pydantic would read it as seconds)
            raise ValueError("modified must be an RFC 3339 date and time, e.g. 2026-12-01T09:00:00Z")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> "PushBody":
        if (self.text is None) == (self.content_base64 is None):
            raise ValueError("send exactly one of text and content_base64")
        if self.content_base64 is not None and self.filename is None:
            raise ValueError("a file (content_base64) needs its filename")
        return self


class PushResult(BaseModel):
    source: str
    id: str
    status: str  # created | replaced
    published: bool  # searchable already (asked with ?publish=true)


def router(ctx: Context) -> APIRouter:
    api = APIRouter(responses=errors(400, 401, 403, 413, 415, 421, 429))
    pusher, db = ctx.pusher, ctx.db

    def check(who: Caller, source: str) -> None:
        if who.sources and source not in who.sources:
            raise ApiError(403, f"this token may push to {', '.join(who.sources)} only, not {source!r}",
                           "permission_error")

    def previous(key: str) -> tuple[str, tuple[str, ...]] | None:
        """(content hash, readers) of the document as queued or stored, or None when there is none."""
        pending = ctx.push_queue().pending(key)
        if pending is not None:
            return None if pending.deleted else (pending.content_hash, pending.groups)
        try:
            stored = ctx.service.searcher.reader
            stored.refresh()
        except IndexNotFoundError:
            return None
        assert stored.view is not None
        found = stored.view.stored_document(key)
        return None if found is None else (found.content_hash, found.groups)

    @api.put("/v1/sources/{source}/documents/{external_id:path}", tags=["sources"], status_code=201,
             response_model=PushResult, responses={200: {"model": PushResult, "description": "Replaced"},
                                                   204: {"description": "Unchanged: nothing queued"}})
    def push(body: PushBody, source: str = PathParam(pattern=SOURCE_NAME.pattern, max_length=64),
             external_id: str = PathParam(min_length=1, max_length=MAX_EXTERNAL_ID),
             publish: bool = Query(False, description="Answer once it is searchable"),
             who: Caller = Depends(pusher)) -> Any:
        """Create or replace the document `external_id` of `source` (idempotent: the same bytes and readers
        again are a 204 and cost nothing)."""
        check(who, source)
        if body.text is not None:
            title = " ".join(body.title.split()) or external_id
            data, extension = f"# {title}\n\n{body.text}".encode("utf-8", "surrogatepass"), ".md"
        else:
            extension = os.path.splitext(body.filename or "")[1].lower()
            try:
                data = base64.b64decode(body.content_base64 or "", validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "content_base64 is not valid base64") from None
        readers = tuple(sorted(set(body.groups) | {LOGIN_READER + u for u in body.users}))
        key = push_key(source, external_id)
        digest = content_hash(data)
        before = previous(key)
        if before == (digest, readers):
            db.audit_shown(who.user.username, "pushed document (unchanged)", f"{source}/{external_id}",
                           [{"path": key}])
            pending = ctx.push_queue().pending(key)
            if publish and pending is not None:  # the same as queued, not yet searchable: wait for it like a push
                ctx.push_committer().wait_published(pending.seq, PUBLISH_WAIT_S)
            return Response(status_code=204)
        modified = int(body.modified.timestamp() * 1e9) if body.modified is not None else 0
        entry = ctx.push_queue().put(Entry(0, key, source, extension=extension, groups=readers, url=body.url or "",
                                           modified_ns=modified, content_hash=digest, size=len(data),
                                           username=who.user.username), data)
        status = "replaced" if before is not None else "created"
        db.audit_shown(who.user.username, f"pushed document ({status})", f"{source}/{external_id}", [{"path": key}])
        committer = ctx.push_committer()  # running: it commits at its next interval, or now when asked to publish
        published = committer.wait_published(entry.seq, PUBLISH_WAIT_S) if publish else False
        return JSONResponse(PushResult(source=source, id=external_id, status=status, published=published).model_dump(),
                            status_code=200 if before is not None else 201)

    @api.delete("/v1/sources/{source}/documents/{external_id:path}", tags=["sources"], status_code=204,
                responses=errors(404))
    def delete(source: str = PathParam(pattern=SOURCE_NAME.pattern, max_length=64),
               external_id: str = PathParam(min_length=1, max_length=MAX_EXTERNAL_ID),
               publish: bool = Query(False, description="Answer once it is gone from search"),
               who: Caller = Depends(pusher)) -> Response:
        """Remove the document `external_id` of `source` (404 when there is none)."""
        check(who, source)
        key = push_key(source, external_id)
        if previous(key) is None:
            raise ApiError(404, "no such pushed document", "not_found_error")
        entry = ctx.push_queue().put(Entry(0, key, source, deleted=True, username=who.user.username), None)
        db.audit_shown(who.user.username, "deleted pushed document", f"{source}/{external_id}", [{"path": key}])
        if publish:
            ctx.push_committer().wait_published(entry.seq, PUBLISH_WAIT_S)
        else:
            ctx.push_committer()  # running: it commits at its next interval
        return Response(status_code=204)

    return api
