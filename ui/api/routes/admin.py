"""Administration: indexing and removal jobs, the audit log and the feedback; every route needs an admin
token (`ctx.admin`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response

from ui.api.auth import ApiError, Caller
from ui.api.context import MAX_ID, Context
from ui.api.schemas import IngestRequest, errors
from ui.jobs import JobBusyError, PathNotAllowedError

# JSON rows, or with format=csv a spreadsheet-safe CSV file
EXPORT: dict[int | str, dict] = {200: {"content": {"application/json": {"schema": {"type": "object"}},
                                                  "text/csv": {"schema": {"type": "string"}}}}}


def router(ctx: Context) -> APIRouter:
    api = APIRouter(responses=errors(400, 401, 421, 429, 503, 403))  # every route: ctx.admin
    db, admin, view, state = ctx.db, ctx.admin, ctx.view, ctx.state

    @api.post("/v1/ingest", tags=["admin"], status_code=202, responses=errors(409, 413, 415))
    def ingest(body: IngestRequest, who: Caller = Depends(admin)) -> dict[str, Any]:
        """Index a folder (under RAG_UI_ALLOWED_ROOTS) in the background; follow it at /v1/jobs/{id}."""
        try:
            job = state.jobs.start_ingest(body.folder, who.user.username)
        except PathNotAllowedError as exc:
            raise ApiError(403, str(exc), "permission_error") from None
        except JobBusyError as exc:
            raise ApiError(409, str(exc), "conflict", {"Retry-After": "30"}) from None
        return {"job_id": job.run_id, "kind": job.kind, "paths": job.paths}

    @api.get("/v1/jobs/{job_id}", tags=["admin"], responses=errors(404))
    def job(job_id: int = PathParam(ge=0, le=MAX_ID), who: Caller = Depends(admin)) -> dict[str, Any]:
        """An indexing or removal job: its progress while it runs, its summary once done."""
        live = state.jobs.current
        if live is not None and live.run_id == job_id and live.running:
            return {"job_id": job_id, "status": "running", "kind": live.kind, "phase": live.phase,
                    "files_done": live.files_done, "files_total": live.files_total, "chunks": live.chunks}
        run = db.run(job_id)
        if run is None:
            raise ApiError(404, "no such job", "not_found_error")
        return {"job_id": run.id, "status": run.status, "kind": run.kind, "paths": run.paths, "started": run.started,
                "finished": run.finished, "summary": run.summary, "error": run.error}

    @api.delete("/v1/documents/{doc_id}", tags=["admin"], status_code=202, responses=errors(404, 409))
    def remove(doc_id: int = PathParam(ge=0, le=MAX_ID), who: Caller = Depends(admin)) -> dict[str, Any]:
        """Take a document out of the index (it stays out of later runs until restored on the page)."""
        found = view().document(doc_id)
        if found is None:
            raise ApiError(404, "no such document", "not_found_error")
        try:
            job = state.jobs.start_removal([found.path], who.user.username)
        except PathNotAllowedError as exc:
            raise ApiError(403, str(exc), "permission_error") from None
        except JobBusyError as exc:
            raise ApiError(409, str(exc), "conflict", {"Retry-After": "30"}) from None
        return {"job_id": job.run_id, "kind": job.kind, "paths": job.paths}

    def export(table: str, format: str, limit: int) -> Response:  # noqa: A002 - the API's name
        if format == "csv":
            text = db.audit_csv() if table == "audit" else db.feedback_csv()
            return Response(text, media_type="text/csv", headers={
                "Content-Disposition": f"attachment; filename={table}.csv"})
        return JSONResponse({table: db.rows(table, limit)})

    @api.get("/v1/audit", tags=["admin"], responses=EXPORT)
    def audit(who: Caller = Depends(admin), format: str = Query("json", pattern="^(json|csv)$"),  # noqa: A002
              limit: int = Query(1000, ge=1, le=100_000)) -> Response:
        """Who asked what and which documents they were shown, newest first (CSV: everything, oldest first)."""
        return export("audit", format, limit)

    @api.get("/v1/feedback", tags=["admin"], responses=EXPORT)
    def feedback(who: Caller = Depends(admin), format: str = Query("json", pattern="^(json|csv)$"),  # noqa: A002
                 limit: int = Query(1000, ge=1, le=100_000)) -> Response:
        """The thumbs up and down staff gave answers, newest first."""
        return export("feedback", format, limit)

    return api
