"""The HTTP entrypoint: Twilio's signed webhook into the conversation inbox, the session API,
health and metrics. ``create_app`` builds it from values the composition root hands in.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError
from starlette.datastructures import URL
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from wa_sessions import __version__
from wa_sessions.config import STATUS_CALLBACK_PATH, Settings
from wa_sessions.errors import (
    BadRequest,
    InboxFull,
    InvalidPhoneNumber,
    InvalidSignature,
    SessionNotFound,
    WaSessionsError,
)
from wa_sessions.metrics import WEBHOOK_LATENCY, WEBHOOK_REQUESTS, render_metrics
from wa_sessions.statemachine.models import SessionStatus, SessionSummary
from wa_sessions.statemachine.redis.inbox import AsyncInbox
from wa_sessions.statemachine.redis.store import IngestOutcome, to_ms
from wa_sessions.statemachine.service import SessionService
from wa_sessions.webhook import errors
from wa_sessions.webhook.errors import (
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnauthorizedError,
    storage_unavailable,
)
from wa_sessions.webhook.schemas import (
    ActiveSessions,
    ErrorBody,
    Health,
    SessionDetail,
    SessionEnded,
    SessionList,
    SessionView,
)
from wa_sessions.webhook.twilio import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    FormParams,
    SignatureChecker,
    check_account,
    decode_form,
    parse_inbound,
    signed_url,
)

WEBHOOK_PATH = "/twilio-webhook-opt"
#: The ``endpoint`` label of this webhook in WEBHOOK_REQUESTS / WEBHOOK_LATENCY.
WEBHOOK_ENDPOINT = "inbound"
WEBHOOK_OUTCOMES = (
    "accepted",
    "duplicate",
    "bad_signature",
    "bad_request",
    "too_large",
    "inbox_full",
    "unavailable",
    "error",
)
TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_PAGE = 1000
#: Redis range indexes are 64-bit: an unbounded offset would make the page read fail (a 500).
MAX_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class WebDeps:
    """What the HTTP layer needs, built by the composition root.

    A drain wake-up is enqueued by the inbox's ingest script when the inbox has a
    ``wake_message``; otherwise ``wake`` enqueues it for a conversation key. One of the two is
    required. The webhook never imports the workers.
    """

    settings: Settings
    service: SessionService
    inbox: AsyncInbox
    wake: Callable[[str], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        if self.wake is None and self.inbox.wake_message is None:
            raise ValueError("WebDeps needs wake, or an inbox that enqueues wake-ups itself")


class WebApp(FastAPI):
    """FastAPI with Twilio's endpoints answered ahead of its middleware stack.

    Twilio's POSTs are the hot path (one per message, several status callbacks per reply): they
    go straight to their ``TwilioEndpoint`` as raw ASGI, skipping the error, guard and routing
    layers (which handle nothing there: the endpoints answer their own errors). Their routes are
    still declared below, so the OpenAPI schema documents them."""

    twilio_endpoints: dict[str, TwilioEndpoint]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.twilio_endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(deps: WebDeps) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        deps.inbox.close()

    app = WebApp(
        lifespan=lifespan,
        # FastAPI's native telemetry looks up a tracer provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="wa-sessions",
        version=__version__,
        description=(
            "WhatsApp sessions for businesses on Twilio: a signed inbound webhook that queues "
            "messages per conversation, and an admin API over the sessions."
        ),
    )
    errors.install(app, uncounted_routes=frozenset({WEBHOOK_PATH, STATUS_CALLBACK_PATH}))
    webhook = _TwilioWebhook(deps)
    app.twilio_endpoints = {WEBHOOK_PATH: webhook}
    app.add_api_route(
        WEBHOOK_PATH,
        webhook.handle,
        methods=["POST"],
        name="twilio_webhook",
        summary="Twilio inbound WhatsApp message webhook",
        response_class=Response,
        responses=_WEBHOOK_RESPONSES,
        openapi_extra=_WEBHOOK_OPENAPI,
        tags=["twilio"],
    )
    # Imported here: the status callback module builds on this one's helpers.
    from wa_sessions.webhook.status import install_status_callback

    app.twilio_endpoints[STATUS_CALLBACK_PATH] = install_status_callback(app, deps)
    app.include_router(_session_api(deps))
    app.include_router(_operations(deps))
    return app


# ---- Twilio webhook ------------------------------------------------------------------------


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, PayloadTooLargeError):
        return "too_large"
    if isinstance(exc, InvalidSignature):
        return "bad_signature"
    if isinstance(exc, BadRequest | InvalidPhoneNumber):
        return "bad_request"
    if isinstance(exc, InboxFull):
        return "inbox_full"
    if isinstance(exc, ServiceUnavailableError):
        return "unavailable"
    return "error"


class TwilioRequest:
    """What a Twilio endpoint reads of a request, straight from the ASGI scope (a Starlette
    ``Request`` costs more to build than the endpoint's own checks)."""

    __slots__ = ("headers", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        # Repeated names keep their first value, as Starlette's ``Headers.get`` does.
        headers: dict[bytes, bytes] = {}
        for name, value in reversed(scope["headers"]):
            headers[name] = value
        self.headers = headers

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def body(self, limit: int) -> bytes:
        """The body, refused as soon as it is known to exceed ``limit`` (declared or streamed)."""
        declared = self.headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BadRequest("Content-Length is not a number")
            if int(declared) > limit:
                raise PayloadTooLargeError(f"body is over {limit} bytes")
        body = b""
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                raise BadRequest("the client went away before the body was complete")
            chunk: bytes = message.get("body", b"")
            body += chunk
            if len(body) > limit:
                raise PayloadTooLargeError(f"body is over {limit} bytes")
            if not message.get("more_body", False):
                return body


_SIGNATURE_HEADER = SIGNATURE_HEADER.encode()
_SIGNATURE_SETTINGS_HEADER = SIGNATURE_SETTINGS_HEADER.encode()


async def read_signed_form(
    request: TwilioRequest, settings: Settings, checker: SignatureChecker
) -> FormParams:
    """The form of a request from Twilio, once it is proven to be one: the signature header
    first (403 before the body is read), then size (413), encoding (400), the signature over the
    public URL and every field (403), and the account (403)."""
    signature = request.header(_SIGNATURE_HEADER)
    if not signature:
        raise InvalidSignature("X-Twilio-Signature header is missing")
    params = decode_form(await request.body(settings.max_body_bytes))
    scope = request.scope
    query = scope.get("query_string", b"").decode("latin-1")
    checker.check(
        signed_url(
            # The URL as this server received it, built only when nothing overrides it.
            request_url="" if settings.public_base_url else str(URL(scope=scope)),
            path=scope["path"],
            query=query,
            public_base_url=settings.public_base_url,
            trust_proxy_headers=settings.trust_proxy_headers,
            forwarded_proto=request.header(b"x-forwarded-proto"),
            forwarded_host=request.header(b"x-forwarded-host"),
        ),
        params,
        signature,
        request.header(_SIGNATURE_SETTINGS_HEADER),
    )
    check_account(params, settings.twilio_account_sid)
    return params


class TwilioEndpoint:
    """What every endpoint Twilio calls shares: answer empty TwiML, count each request's outcome
    under the endpoint's label and time it. Subclasses implement ``process``."""

    def __init__(self, deps: WebDeps, endpoint: str, outcomes: tuple[str, ...]) -> None:
        self.deps = deps
        self.endpoint = endpoint
        self.settings = deps.settings
        self.checker = SignatureChecker(deps.settings.twilio_auth_token)
        self.counters = {o: WEBHOOK_REQUESTS.labels(endpoint, o) for o in outcomes}
        self.latency = WEBHOOK_LATENCY.labels(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answers one request as raw ASGI (``WebApp`` routes Twilio's POSTs here)."""
        started = perf_counter()
        outcome = "error"
        error: Response | None = None
        try:
            outcome = await self.process(TwilioRequest(scope, receive))
        except WaSessionsError as exc:
            outcome = _outcome_of(exc)
            error = errors.response_for(exc)
        except Exception as exc:
            errors.log_unexpected(f"{self.endpoint} endpoint failed", exc)
            error = errors.error_response(errors.InternalError.code, "internal error", 500)
        finally:
            self.counters[outcome].inc()
            self.latency.observe(perf_counter() - started)
        if error is not None:
            await error(scope, receive, send)
            return
        await send(_TWIML_START)
        await send(_TWIML_BODY)

    async def handle(self, request: Request) -> Response:
        """The declared route (for the OpenAPI schema); ``WebApp`` answers ahead of it."""
        return _Asgi(self, request.receive)

    async def process(self, request: TwilioRequest) -> str:
        """Handles the request; returns its outcome label (errors are raised)."""
        raise NotImplementedError


class _TwilioWebhook(TwilioEndpoint):
    """Checks, parses and queues one inbound message: one Redis round trip per request."""

    def __init__(self, deps: WebDeps) -> None:
        super().__init__(deps, WEBHOOK_ENDPOINT, WEBHOOK_OUTCOMES)

    async def process(self, request: TwilioRequest) -> str:
        settings = self.settings
        params = await read_signed_form(request, settings, self.checker)
        accepted_at = self.deps.service.clock()
        conversation, message = parse_inbound(
            params,
            accepted_at=accepted_at,
            default_region=settings.default_region,
            account_sid=settings.twilio_account_sid,
        )
        conv_key = conversation.key
        try:
            result = await self.deps.inbox.accept(conv_key, message, accepted_ms=to_ms(accepted_at))
        except RedisError as exc:
            if storage_unavailable(exc):
                raise ServiceUnavailableError("storage is unavailable; retry later") from exc
            raise
        if result is IngestOutcome.FULL:
            raise InboxFull("this conversation has too many unprocessed messages; retry later")
        if result is IngestOutcome.DUPLICATE:
            return "duplicate"
        wake = self.deps.wake
        if result is IngestOutcome.ACCEPTED_WAKE and wake is not None:  # not enqueued by Lua
            try:
                await wake(conv_key)
            except Exception as exc:
                # The message is stored and the conversation is pending: the re-drive pass
                # wakes it once the wake flag lapses, so Twilio still gets its 200.
                errors.log_unexpected("drain wake-up failed", exc)
        return "accepted"


class _Asgi(Response):
    """A response that hands the request to a raw ASGI endpoint."""

    def __init__(self, endpoint: TwilioEndpoint, receive: Receive) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.receive = receive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, self.receive, send)


_TWIML_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/xml"),
        (b"content-length", str(len(TWIML_EMPTY)).encode()),
    ],
}
_TWIML_BODY = {"type": "http.response.body", "body": TWIML_EMPTY}


_ERROR = {"model": ErrorBody}
_WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Accepted (or already accepted): empty TwiML.",
        "content": {"text/xml": {"example": TWIML_EMPTY.decode()}},
    },
    400: {**_ERROR, "description": "Missing or malformed field."},
    403: {**_ERROR, "description": "Missing or invalid X-Twilio-Signature, or foreign account."},
    413: {**_ERROR, "description": "Body over MAX_BODY_BYTES."},
    429: {**_ERROR, "description": "The conversation's inbox is full."},
    503: {**_ERROR, "description": "Redis unavailable; Twilio should retry or use its fallback."},
}
_TWILIO_FIELDS = (
    "MessageSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "NumSegments",
    "ProfileName",
    "WaId",
    "MessageType",
    "ButtonText",
    "ButtonPayload",
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "OriginalRepliedMessageSid",
)
_WEBHOOK_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Twilio-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "Twilio's HMAC over the public URL and every form field.",
        },
        {
            "name": "X-Twilio-Webhooks-Signature-Settings",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Names the signing algorithm (HMAC_SHA256); absent means HMAC_SHA1.",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["MessageSid", "From", "To"],
                    "properties": {
                        **{name: {"type": "string"} for name in _TWILIO_FIELDS},
                        "NumMedia": {"type": "integer", "minimum": 0, "maximum": 10},
                    },
                    "additionalProperties": {"type": "string"},
                }
            }
        },
    },
}


# ---- session API ---------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="The service's ADMIN_TOKEN.")
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Sessions to skip.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described: dict[int | str, dict[str, Any]] = {code: dict(_ERROR) for code in codes}
    # Declaring a default error also keeps FastAPI from advertising its 422 (we answer 400).
    described["default"] = {**_ERROR, "description": "Any error, as a JSON error body."}
    return described


def _session_api(deps: WebDeps) -> APIRouter:
    service = deps.service
    expected = deps.settings.admin_token.encode()

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        # An unset token locks the API rather than opening it.
        if (
            not expected
            or credentials is None
            or not hmac.compare_digest(credentials.credentials.encode(), expected)
        ):
            raise UnauthorizedError("a valid admin bearer token is required")

    router = APIRouter(dependencies=[Depends(require_admin)], tags=["sessions"])

    @router.get(
        "/session/{phone_number}",
        responses=_responses(400, 401, 404),
        summary="A phone's active session, else its latest one, with recent history",
    )
    def get_session(
        phone_number: str,
        limit: Annotated[
            int, Query(ge=1, le=MAX_PAGE, description="Messages of history to return.")
        ] = 50,
        business_number: Annotated[
            str | None, Query(description="Defaults to the configured BUSINESS_NUMBER.")
        ] = None,
    ) -> SessionDetail:
        session = service.get_latest_session_by_phone(
            phone_number, business_number, message_limit=limit
        )
        if session is None:
            raise SessionNotFound("no session for that phone number")
        history = session.messages
        return SessionDetail(
            session=SessionView.of(session, service.clock()),
            conversation_history=history,
            message_count=len(history),
        )

    @router.get(
        "/sessions/active",
        responses=_responses(400, 401),
        summary="Active sessions, most recently active first",
    )
    def active_sessions(offset: Offset = 0, limit: Limit = 50) -> ActiveSessions:
        page = service.get_active_sessions(offset=offset, limit=limit)
        now = service.clock()
        return ActiveSessions(
            active_sessions=[SessionView.of(s, now) for s in page.sessions],
            total_active=page.total,
            offset=page.offset,
            limit=page.limit,
        )

    @router.get(
        "/sessions",
        responses=_responses(400, 401),
        summary="All sessions, newest first, optionally filtered by status",
    )
    def list_sessions(
        status: Annotated[SessionStatus | None, Query()] = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> SessionList:
        page = service.get_all_sessions(offset=offset, limit=limit, status=status)
        now = service.clock()
        return SessionList(
            sessions=[SessionView.of(s, now) for s in page.sessions],
            total=page.total,
            offset=page.offset,
            limit=page.limit,
        )

    @router.post(
        "/session/{session_id}/complete",
        responses=_responses(400, 401, 404, 409),
        summary="Mark an active session completed",
    )
    def complete_session(session_id: uuid.UUID) -> SessionEnded:
        session = service.complete_session(str(session_id))
        return SessionEnded(
            message="Session completed successfully",
            session=SessionView.of(session, service.clock()),
        )

    @router.post(
        "/session/{session_id}/expire",
        responses=_responses(400, 401, 404, 409),
        summary="Mark an active session expired",
    )
    def expire_session(session_id: uuid.UUID) -> SessionEnded:
        session = service.expire_session(str(session_id))
        return SessionEnded(
            message="Session expired successfully",
            session=SessionView.of(session, service.clock()),
        )

    @router.get(
        "/session/{session_id}/summary",
        responses=_responses(400, 401, 404),
        summary="Counts, duration and window state of one session",
    )
    def session_summary(session_id: uuid.UUID) -> SessionSummary:
        return service.get_session_summary(str(session_id))

    return router


# ---- operations ----------------------------------------------------------------------------


def _operations(deps: WebDeps) -> APIRouter:
    store = deps.service.store
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", responses={503: _ERROR}, summary="Ready when Redis answers")
    def healthz() -> Health:
        try:
            ok = store.ping()
        except RedisError as exc:
            raise ServiceUnavailableError("redis is unreachable") from exc
        if not ok:
            raise ServiceUnavailableError("redis did not answer the ping")
        return Health(status="ok")

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus exposition",
    )
    def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    return router
