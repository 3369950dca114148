"""``/docs`` (Swagger UI) and ``/redoc`` served with their assets from this package, not a CDN:
the pages work offline and on networks that block third-party scripts.

The assets are vendored from the npm registry with their licences (``static/README.md`` says
which versions and how to update them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from wa_sessions.security_headers import page_policy

STATIC_DIR = Path(__file__).parent / "static"
#: Where the vendored assets are served.
STATIC_PATH = "/static/docs"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"


def install_docs(app: FastAPI) -> None:
    """Serves the vendored assets and the two documentation pages on ``app`` (created with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not declared). The pages are
    rendered once; each carries the Content-Security-Policy its assets need (``headers``)."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = f"{DOCS_PATH}/oauth2-redirect"

    swagger_ui = _with_policy(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{STATIC_PATH}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PATH}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PATH}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=oauth2_redirect,
            # No badge fetched from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        ),
        # The document, and "Try it out" against this same service; icons are data: URLs.
        connect_src="'self'",
        img_src="'self' data:",
    )
    # Opened by Swagger UI after an OAuth2 login: an inline script that hands the result back.
    oauth2_redirect_page = _with_policy(get_swagger_ui_oauth2_redirect_html())
    redoc = _with_policy(
        get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{STATIC_PATH}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_PATH}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        ),
        connect_src="'self'",
        img_src="'self' data:",
        # ReDoc styles its components by inserting <style> elements as it renders, and runs
        # its search index in a worker it builds from a blob: URL.
        style_src="'self' 'unsafe-inline'",
        worker_src="blob:",
    )

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui_page() -> HTMLResponse:
        return swagger_ui()

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return oauth2_redirect_page()

    @app.get(REDOC_PATH, include_in_schema=False)
    def redoc_page() -> HTMLResponse:
        return redoc()


def _with_policy(page: HTMLResponse, **directives: str) -> Callable[[], HTMLResponse]:
    """The page, rendered once, as a fresh response per request with its policy."""
    body = bytes(page.body)
    headers = {"Content-Security-Policy": page_policy(body.decode(), **directives)}
    return lambda: HTMLResponse(body, headers=headers)
