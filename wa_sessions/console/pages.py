"""Rendering: the Jinja2 environment of the console's templates (autoescaped), its filters, and
the readable error pages every refusal under ``/console`` becomes (JSON stays the session
API's answer). Errors are counted in ``API_ERRORS`` by code, as the API's are."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from wa_sessions.console.auth import ConsoleRefusal, SignInRequired
from wa_sessions.metrics import API_ERRORS
from wa_sessions.security_headers import page_policy

PREFIX = "/console"


def duration(seconds: float | None) -> str:
    """``3 h 05 min``, ``42 s``: how long, in the two largest units."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    minutes, s = divmod(s, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def build_templates() -> Environment:
    env = Environment(
        loader=PackageLoader("wa_sessions.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = duration
    env.filters["when"] = when
    return env


def _policy(html: str) -> str:
    """The console's Content-Security-Policy: its own scripts and styles only (no inline ones,
    htmx is configured through a ``<meta>`` tag), images from itself (the media proxy), the
    event stream and htmx requests to itself, forms posted only to itself, never framed."""
    return page_policy(html, img_src="'self' data:", connect_src="'self'", form_action="'self'")


class Pages:
    """Renders templates into responses; the request's CSRF token and operator go along."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def render(
        self, request: Request, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        sign_in = getattr(request.state, "sign_in", None)
        html = self.env.get_template(name).render(
            request=request,
            operator=sign_in.operator if sign_in else None,
            csrf_token=sign_in.csrf if sign_in else "",
            prefix=PREFIX,
            **context,
        )
        headers = {"Cache-Control": "no-store", "Content-Security-Policy": _policy(html)}
        return HTMLResponse(html, status_code=status, headers=headers)

    def error(self, request: Request, status: int, code: str, title: str, message: str) -> Response:
        API_ERRORS.labels(code).inc()
        return self.render(request, "error.html", status, title=title, message=message, code=code)


async def _answer(result: Response | Awaitable[Response]) -> Response:
    return await result if inspect.isawaitable(result) else result


def _console(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def install_error_pages(app: FastAPI, pages: Pages) -> None:
    """Console refusals as pages; validation and routing errors under ``/console`` too,
    delegating to the JSON handlers (``webhook/errors.py``) everywhere else."""

    async def on_refusal(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleRefusal)
        if isinstance(exc, SignInRequired):
            if not exc.partial:
                return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
            API_ERRORS.labels(exc.code).inc()
            return HTMLResponse(exc.message, status_code=401)
        return pages.error(request, exc.status, exc.code, exc.title, exc.message)

    json_validation = app.exception_handlers[RequestValidationError]
    json_http = app.exception_handlers[StarletteHTTPException]

    async def on_validation(request: Request, exc: Exception) -> Response:
        if not _console(request):
            return await _answer(json_validation(request, exc))
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: "
            f"{e.get('msg', 'invalid')}"
            for e in exc.errors()
        )
        return pages.error(request, 400, "bad_request", "Bad request", problems)

    async def on_http(request: Request, exc: Exception) -> Response:
        if not _console(request):
            return await _answer(json_http(request, exc))
        assert isinstance(exc, StarletteHTTPException)
        title = "Not found" if exc.status_code == 404 else "Request refused"
        code = "not_found" if exc.status_code == 404 else "http_error"
        return pages.error(request, exc.status_code, code, title, str(exc.detail))

    app.add_exception_handler(ConsoleRefusal, on_refusal)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
