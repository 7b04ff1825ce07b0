"""Operations, no prefix and no auth: health, readiness, metrics and the offline API docs."""

from __future__ import annotations

import logging
from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from orgbill.errors import error_response
from orgbill.kit import metrics
from orgbill.operations.schemas import Health, Ready

logger = logging.getLogger("orgbill.readiness")
router = APIRouter(tags=["operations"])

# Swagger UI and ReDoc ship inside a PyPI package and are served from here: the docs
# work with no internet access (no CDN).
DOCS_ASSETS_PATH = "/docs/assets"
_DOCS_ASSETS_DIR = str(files("fastapi_offline") / "static")


@router.get("/healthz")
async def get_health() -> Health:
    """The process is up."""
    return Health()


@router.get("/readyz", response_model=Ready)
async def get_readiness(request: Request) -> Response | Ready:
    """Database reachable, schema migrated to head, plan catalog loaded; else 503 with why."""
    # Memoised by the app (main.py): the database is asked at most once a second.
    readiness = await request.app.state.readiness.get()
    if not readiness.ready:
        reason = readiness.reason or "Not ready"
        logger.warning("not ready", extra={"reason": reason})
        return error_response(503, "unavailable", reason)
    return Ready(schema_revision=readiness.schema_revision)


async def get_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


async def get_swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} API",
        swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS_PATH}/favicon.png",
        swagger_ui_parameters={"persistAuthorization": True},
    )


async def get_redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=request.app.openapi_url or "/openapi.json",
        title=f"{request.app.title} API",
        redoc_js_url=f"{DOCS_ASSETS_PATH}/redoc.standalone.js",
        redoc_favicon_url=f"{DOCS_ASSETS_PATH}/favicon.png",
        with_google_fonts=False,
    )


def mount_operations(app: FastAPI) -> None:
    app.include_router(router)
    # Outside the schema, so added to the app itself: anything listing `app.routes` sees them.
    for path, endpoint in (
        ("/metrics", get_metrics),
        ("/docs", get_swagger_ui),
        ("/redoc", get_redoc),
    ):
        app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=_DOCS_ASSETS_DIR), name="docs-assets")
