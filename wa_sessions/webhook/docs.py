"""``/docs`` (Swagger UI) and ``/redoc`` served with their assets from this package, not a CDN:
the pages work offline and on networks that block third-party scripts.

The assets are vendored from the npm registry with their licences (``static/README.md`` says
which versions and how to update them).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
#: Where the vendored assets are served.
STATIC_PATH = "/static/docs"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"


def install_docs(app: FastAPI) -> None:
    """Serves the vendored assets and the two documentation pages on ``app`` (created with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not declared)."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = f"{DOCS_PATH}/oauth2-redirect"

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{STATIC_PATH}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PATH}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PATH}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=oauth2_redirect,
            # No badge fetched from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{STATIC_PATH}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_PATH}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
