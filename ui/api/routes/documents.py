"""Documents, their text, their files and their page images: only those the caller may read (a document
they may not read is a 404 like a missing one), each read audited."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from rag.store import DocumentInfo
from rag.types import page_unit
from ui.api.auth import ApiError, Caller
from ui.api.context import MAX_ID, Context
from ui.api.schemas import errors
from ui.sources import RenderBusyError, SourceChangedError, read_indexed_file


def document_dict(doc: DocumentInfo) -> dict[str, Any]:
    return {"id": doc.doc_id, "path": doc.path, "title": doc.title, "chunks": doc.chunks, "size": doc.size,
            "modified": doc.modified, "version": doc.version, "unit": page_unit(doc.path)}


def router(ctx: Context) -> APIRouter:
    api = APIRouter(responses=errors(400, 401, 421, 429, 503))  # every route: ctx.caller
    db, caller, view, viewer, state = ctx.db, ctx.caller, ctx.view, ctx.viewer, ctx.state

    @api.get("/v1/documents", tags=["documents"])
    def documents(who: Caller = Depends(caller), prefix: str = Query("", max_length=4096),
                  type: str = Query("", max_length=16, pattern=r"^[A-Za-z0-9]*$",  # noqa: A002 - the API's name
                                    description="File extension without the dot, e.g. pdf"),
                  contains: str = Query("", max_length=200), offset: int = Query(0, ge=0),
                  limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """The documents the caller may read, by path, a page at a time."""
        docs = view().list_documents(contains, limit, groups=who.groups, prefix=prefix,
                                     suffix=f".{type}" if type else "", offset=offset)
        db.audit_shown(who.user.username, "listed documents", f"prefix={prefix!r} contains={contains!r}",
                       [{"path": d.path, "doc_id": d.doc_id} for d in docs])
        return {"documents": [document_dict(d) for d in docs], "offset": offset, "limit": limit}

    @api.get("/v1/documents/{doc_id}", tags=["documents"], responses=errors(404))
    def document(doc_id: int = PathParam(ge=0, le=MAX_ID), who: Caller = Depends(caller)) -> dict[str, Any]:
        """A document's metadata and its chunks (404 when it does not exist or the caller may not read it:
        the two are not told apart)."""
        v = view()
        found = v.document(doc_id, who.groups)
        if found is None:
            raise ApiError(404, "no such document", "not_found_error")
        db.audit_source(who.user.username, "read document", found.path, found.doc_id)
        return {**document_dict(found), "chunks": [{"chunk_id": h.chunk_id, "position": h.position, "page": h.page,
                                                    "title": h.title, "text": h.text}
                                                   for h in v.document_chunks(doc_id)]}

    @api.get("/v1/documents/{doc_id}/file", tags=["documents"], response_class=Response, responses={
        **errors(404, 409), 200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                                  "description": "The file, as an attachment, with its own type"}})
    def document_file(doc_id: int = PathParam(ge=0, le=MAX_ID), who: Caller = Depends(caller)) -> Response:
        """The original file, as it was indexed: refused (409) when the file on disk is no longer what was
        indexed, so a link or a swapped file never serves anything else."""
        found = view().document(doc_id, who.groups)
        if found is None:
            raise ApiError(404, "no such document", "not_found_error")
        try:
            data = read_indexed_file(Path(found.path), found.content_hash,
                                     int(state.settings.ingest.max_file_mb * 2**20))
        except SourceChangedError as exc:
            raise ApiError(409, str(exc), "conflict") from None
        db.audit_source(who.user.username, "downloaded", found.path, found.doc_id)
        kind = mimetypes.guess_type(found.path)[0] or "application/octet-stream"
        name = Path(found.path).name
        return Response(data, media_type=kind, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})

    @api.get("/v1/chunks/{chunk_id}/page", tags=["documents"], response_class=Response,
             responses={**errors(404, 409, 415), 200: {"content": {"image/png": {"schema": {"type": "string",
                                                                                          "format": "binary"}}}}})
    def chunk_page(chunk_id: int = PathParam(ge=0, le=MAX_ID), page: int | None = Query(None, ge=1, le=100_000),
                   who: Caller = Depends(caller)) -> Response:
        """The page holding a cited chunk (or another `page` of its document) as a PNG, the passage
        highlighted: what the page's source viewer shows. 404 when the chunk is not in the current version or
        the caller may not read its document (not told apart); 409 when the file changed since it was
        indexed; 415 for formats without page images (their text is in /v1/documents/{id})."""
        try:
            shown = viewer.page(view(), chunk_id, who.principal, page)
        except RenderBusyError as exc:  # a bounded number of renders at once: the others are refused, not queued
            raise ApiError(503, str(exc), "service_unavailable", {"Retry-After": "2"}) from None
        if shown is None:
            raise ApiError(404, "no such chunk", "not_found_error")
        if shown.kind != "image":
            if shown.note:
                raise ApiError(409, shown.note, "conflict")
            raise ApiError(415, "this format has no page images: read the text at /v1/documents/{id}",
                           "unsupported_media_type")
        db.audit_source(who.user.username, "viewed source", shown.document.path, shown.document.doc_id, shown.page)
        return Response(shown.png, media_type="image/png", headers={
            "X-Page": str(shown.page), "X-Pages": str(shown.pages or ""), "X-Highlighted": str(shown.highlighted).lower(),
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})

    return api
