"""The one place that turns errors into HTTP responses, so every refusal is the same JSON shape.

Body: ``{"error": {"code": "<WaSessionsError.code>", "message": "..."}}``, counted in
``API_ERRORS`` by code. Messages never carry tracebacks, tokens or whole phone numbers.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wa_sessions.errors import (
    AnalysisFailed,
    AnalysisNotFound,
    AnalysisStale,
    BadRequest,
    FlowInProgress,
    InboxFull,
    InvalidPhoneNumber,
    InvalidSignature,
    InvalidTransition,
    OptedOut,
    OutsideWindow,
    RateLimited,
    SessionAlreadyActive,
    SessionNotFound,
    TakeoverConflict,
    WaSessionsError,
)
from wa_sessions.metrics import API_ERRORS, API_REQUESTS

logger = logging.getLogger(__name__)


class UnauthorizedError(WaSessionsError):
    """The session API was called without the admin bearer token."""

    code = "unauthorized"


class PayloadTooLargeError(WaSessionsError):
    """A request body over ``MAX_BODY_BYTES``."""

    code = "payload_too_large"


class ServiceUnavailableError(WaSessionsError):
    """Redis cannot be reached; the caller should retry (Twilio tries its fallback URL)."""

    code = "unavailable"


#: Redis errors that mean "nothing can be stored now, try again later": unreachable, too slow,
#: or at ``maxmemory`` under ``noeviction`` (refusing writes is what keeps stored data whole).
STORAGE_UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    RedisOutOfMemoryError,
)
# Redis before 7 reports a write refused inside a Lua script as a generic script error.
_OOM_IN_SCRIPT = "OOM command not allowed"


def storage_unavailable(exc: BaseException) -> bool:
    """Whether a Redis error means the write can succeed later (a 503, not a 500)."""
    return isinstance(exc, STORAGE_UNAVAILABLE) or (
        isinstance(exc, RedisResponseError) and _OOM_IN_SCRIPT in str(exc)
    )


class InternalError(WaSessionsError):
    code = "internal_error"


_STATUS: dict[type, int] = {
    BadRequest: 400,
    InvalidPhoneNumber: 400,
    UnauthorizedError: 401,
    InvalidSignature: 403,
    SessionNotFound: 404,
    AnalysisNotFound: 404,
    AnalysisStale: 409,
    AnalysisFailed: 502,
    InvalidTransition: 409,
    SessionAlreadyActive: 409,
    TakeoverConflict: 409,
    OutsideWindow: 409,
    OptedOut: 409,
    FlowInProgress: 409,
    PayloadTooLargeError: 413,
    InboxFull: 429,
    RateLimited: 429,
    ServiceUnavailableError: 503,
}
_HEADERS: dict[type, Mapping[str, str]] = {
    UnauthorizedError: {"WWW-Authenticate": "Bearer"},
}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def log_unexpected(what: str, exc: BaseException) -> None:
    """Logs the exception's type and stack but not its message, which may quote a phone
    number or a message body (pydantic and Redis errors echo their input)."""
    stack = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s: %s\n%s", what, type(exc).__qualname__, stack.rstrip())


def status_of(exc: WaSessionsError) -> int:
    for cls in type(exc).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return 500


def _headers_of(exc: WaSessionsError) -> Mapping[str, str] | None:
    for cls in type(exc).__mro__:
        headers = _HEADERS.get(cls)
        if headers is not None:
            return headers
    return None


def error_response(
    code: str, message: str, status: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    API_ERRORS.labels(code).inc()
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def response_for(exc: WaSessionsError) -> JSONResponse:
    status = status_of(exc)
    if status == 500:
        log_unexpected("unmapped error", exc)
        return error_response(InternalError.code, "internal error", 500)
    return error_response(exc.code, str(exc) or exc.code, status, _headers_of(exc))


def _validation_message(exc: RequestValidationError) -> str:
    # Only the location and pydantic's message: the offending input may be a phone number.
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("query", "path", "header", "body")]
        parts.append(f"{'.'.join(loc) or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _on_domain_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, WaSessionsError)
    return response_for(exc)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(BadRequest.code, _validation_message(exc), 400)


async def _on_redis_error(_: Request, exc: Exception) -> Response:
    if not storage_unavailable(exc):
        log_unexpected("unhandled error", exc)
        return error_response(InternalError.code, "internal error", 500)
    logger.warning("redis unavailable: %s", type(exc).__name__)
    return error_response(ServiceUnavailableError.code, "storage is unavailable; retry later", 503)


async def _on_http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(code, str(exc.detail), exc.status_code, exc.headers)


def install(app: FastAPI, *, uncounted_routes: frozenset[str] = frozenset()) -> None:
    """Registers the handlers, and the outermost guard that turns anything unexpected into a
    500 with ``internal_error`` (Starlette's own handler would re-raise after answering)."""
    app.add_exception_handler(WaSessionsError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    for error in (*STORAGE_UNAVAILABLE, RedisResponseError):
        app.add_exception_handler(error, _on_redis_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(_Guard, uncounted_routes=uncounted_routes)


class _Guard:
    """Pure ASGI: counts API requests by route template and status class, and answers 500
    when a route raised something no handler knows (unless the response had started)."""

    def __init__(self, app: ASGIApp, uncounted_routes: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.uncounted_routes = uncounted_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            log_unexpected("unhandled error", exc)
            if started:
                raise
            await error_response(InternalError.code, "internal error", 500)(scope, receive, send)
        finally:
            self._count(scope, status)

    def _count(self, scope: Scope, status: int) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        if template in self.uncounted_routes:
            return
        API_REQUESTS.labels(template, f"{status // 100}xx").inc()
