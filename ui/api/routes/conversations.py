"""The caller's own conversations (another user's is a 404, like a missing one); a stored answer's sources
are resolved for the caller as they are now (ui/conversations.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from rag.index import IndexView
from ui.api.auth import ApiError, Caller
from ui.api.context import Context
from ui.api.schemas import RenameRequest, errors
from ui.conversations import UNAVAILABLE, shown_answer


def router(ctx: Context) -> APIRouter:
    api = APIRouter(responses=errors(400, 401, 421, 429, 503))  # every route: ctx.caller
    db, caller, inert, view = ctx.db, ctx.caller, ctx.inert, ctx.view

    @api.get("/v1/conversations", tags=["conversations"])
    def conversations(who: Caller = Depends(caller)) -> dict[str, Any]:
        """The caller's conversations, the most recent first (the same store as the page's)."""
        return {"conversations": [c.__dict__ for c in db.conversations(who.user.username)]}

    @api.get("/v1/conversations/{conversation_id}", tags=["conversations"], responses=errors(404))
    def conversation(conversation_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        found = db.conversation(who.user.username, conversation_id)
        if found is None:
            raise ApiError(404, "no such conversation for this user", "not_found_error")
        # sources are resolved for the caller as they are now: gone or no longer readable ones say so, and an
        # answer standing on one is withheld (ui/conversations.py)
        try:
            current: IndexView | None = view()
        except ApiError:
            current = None  # no index: every source is unavailable
        turns = [replace(t, answer=inert(shown_answer(t.answer, current, who.principal)) if t.answer else {})
                 for t in db.turns(who.user.username, conversation_id)]
        db.audit_shown(who.user.username, "read conversation", conversation_id,
                       [{"path": s.get("path"), "page": s.get("page"), "chunk_id": s.get("chunk_id")}
                        for t in turns for s in t.answer.get("sources", []) if s.get("status") != UNAVAILABLE])
        return {**found.__dict__, "turns": [t.__dict__ for t in turns]}

    @api.patch("/v1/conversations/{conversation_id}", tags=["conversations"], responses=errors(404, 413, 415))
    def rename(conversation_id: str, body: RenameRequest, who: Caller = Depends(caller)) -> dict[str, str]:
        if not db.rename_conversation(who.user.username, conversation_id, body.title):
            raise ApiError(404, "no such conversation for this user", "not_found_error")
        return {"id": conversation_id, "title": body.title}

    @api.delete("/v1/conversations/{conversation_id}", tags=["conversations"], status_code=204,
                responses=errors(404))
    def forget(conversation_id: str, who: Caller = Depends(caller)) -> Response:
        """Delete the conversation and its text (the audit log keeps what its retention says)."""
        if not db.delete_conversation(who.user.username, conversation_id):
            raise ApiError(404, "no such conversation for this user", "not_found_error")
        return Response(status_code=204)

    return api
