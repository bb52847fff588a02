"""Health, readiness, metrics and the API's own documentation: no token needed (the probes and the
metrics say nothing about documents; the docs page loads nothing from outside)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ui.api.auth import ApiError
from ui.api.context import Context


def as_openapi_30(schema: Any) -> Any:
    """An OpenAPI 3.1 schema as 3.0 for older viewers: `anyOf [X, null]` becomes X with `nullable`,
    `examples` lists become one `example`, and the version says 3.0.3."""
    if isinstance(schema, list):
        return [as_openapi_30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: as_openapi_30(value) for key, value in schema.items()}
    if "openapi" in out:
        out["openapi"] = "3.0.3"
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        out.pop("anyOf")
        if len(rest) == 1:
            out.update(rest[0])
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if isinstance(out.get("examples"), list) and "properties" not in out:
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    if out.get("type") == "null":
        out.pop("type")
        out["nullable"] = True
    return out


def router(ctx: Context) -> APIRouter:
    api = APIRouter()
    service, metrics = ctx.service, ctx.metrics
    view = ctx.view

    @api.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["service"], responses={503: {"description": "Not ready: the problems are listed"}})
    def readyz() -> JSONResponse:
        """Ready to answer: the index is readable, the models are loaded and the app database answers."""
        problems = []
        try:
            ctx.db.ping(timeout=2)
        except Exception as exc:  # noqa: BLE001 (whatever the driver raises, the replica is not ready)
            problems.append(f"the app database {ctx.db} cannot be reached ({type(exc).__name__})")
        try:
            version = view().manifest.version
        except ApiError as exc:
            problems.append(exc.message)
            version = 0
        if service.embedder is not None and getattr(service.embedder, "device", "") == "unloaded":
            problems.append("the embedding model is not loaded")
        if service.generator.device == "unloaded":
            problems.append("the answer model is not loaded")
        body = {"status": "ready" if not problems else "not ready", "index_version": version, "problems": problems}
        return JSONResponse(body, 200 if not problems else 503)

    @api.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics_text() -> Response:
        """Prometheus metrics: requests and latency per endpoint, generations in flight, busy refusals,
        the index version and size."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/docs/openapi-3.0.json", include_in_schema=False)
    def docs_schema(request: Request) -> dict[str, Any]:
        return as_openapi_30(request.app.openapi())

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        # the bundled Swagger UI (4.x) renders OpenAPI 3.0: it gets a 3.0 copy of the 3.1 contract
        return get_swagger_ui_html(openapi_url="/docs/openapi-3.0.json", title="Document Q&A API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no badge from swagger.io

    return api
