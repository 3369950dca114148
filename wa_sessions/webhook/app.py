"""The HTTP entrypoint: Twilio's signed webhook into the conversation inbox, the session API,
health and metrics. ``create_app`` builds it from values the composition root hands in.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

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
from wa_sessions.statemachine.inbox import AsyncInbox
from wa_sessions.statemachine.models import SessionStatus, SessionSummary
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.store import IngestOutcome, to_ms
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

    ``wake`` enqueues a drain for a conversation key; the webhook never imports the workers.
    """

    settings: Settings
    service: SessionService
    inbox: AsyncInbox
    wake: Callable[[str], Awaitable[None]]


def create_app(deps: WebDeps) -> FastAPI:
    app = FastAPI(
        title="wa-sessions",
        version=__version__,
        description=(
            "WhatsApp sessions for businesses on Twilio: a signed inbound webhook that queues "
            "messages per conversation, and an admin API over the sessions."
        ),
    )
    errors.install(app, uncounted_routes=frozenset({WEBHOOK_PATH, STATUS_CALLBACK_PATH}))
    webhook = _TwilioWebhook(deps)
    # Outermost: the webhook skips FastAPI's routing, dependency and response machinery, which
    # cost it more than parsing, signature and Redis together. The route below still documents
    # it in the OpenAPI schema (and serves it should the fast path be removed).
    app.add_middleware(_WebhookFastPath, webhook=webhook)
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

    install_status_callback(app, deps)
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


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLargeError(f"body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"body is over {limit} bytes")
    return bytes(body)


async def read_signed_form(
    request: Request, settings: Settings, checker: SignatureChecker
) -> FormParams:
    """The form of a request from Twilio, once it is proven to be one: the signature header
    first (403 before the body is read), then size (413), encoding (400), the signature over the
    public URL and every field (403), and the account (403)."""
    headers = request.headers
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        raise InvalidSignature("X-Twilio-Signature header is missing")
    params = decode_form(await _read_body(request, settings.max_body_bytes))
    url = request.url
    checker.check(
        signed_url(
            request_url=str(url),
            path=url.path,
            query=url.query,
            public_base_url=settings.public_base_url,
            trust_proxy_headers=settings.trust_proxy_headers,
            forwarded_proto=headers.get("x-forwarded-proto"),
            forwarded_host=headers.get("x-forwarded-host"),
        ),
        params,
        signature,
        headers.get(SIGNATURE_SETTINGS_HEADER),
    )
    check_account(params, settings.twilio_account_sid)
    return params


class TwilioEndpoint:
    """What every endpoint Twilio calls shares: answer empty TwiML, count each request's outcome
    under the endpoint's label and time it. Subclasses implement ``process``."""

    def __init__(self, deps: WebDeps, endpoint: str, outcomes: tuple[str, ...]) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.checker = SignatureChecker(deps.settings.twilio_auth_token)
        self.counters = {o: WEBHOOK_REQUESTS.labels(endpoint, o) for o in outcomes}
        self.latency = WEBHOOK_LATENCY.labels(endpoint)

    async def handle(self, request: Request) -> Response:
        started = perf_counter()
        outcome = "error"
        try:
            outcome = await self.process(request)
            return Response(TWIML_EMPTY, media_type="text/xml")
        except BaseException as exc:
            outcome = _outcome_of(exc)
            raise
        finally:
            self.counters[outcome].inc()
            self.latency.observe(perf_counter() - started)

    async def process(self, request: Request) -> str:
        """Handles the request; returns its outcome label (errors are raised)."""
        raise NotImplementedError


class _TwilioWebhook(TwilioEndpoint):
    """Checks, parses and queues one inbound message: one Redis round trip per request."""

    def __init__(self, deps: WebDeps) -> None:
        super().__init__(deps, WEBHOOK_ENDPOINT, WEBHOOK_OUTCOMES)

    async def process(self, request: Request) -> str:
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
        if result is IngestOutcome.ACCEPTED_WAKE:  # not enqueued by the ingest script
            try:
                await self.deps.wake(conv_key)
            except Exception as exc:
                # The message is stored and the conversation is pending: the re-drive pass
                # wakes it once the wake flag lapses, so Twilio still gets its 200.
                errors.log_unexpected("drain wake-up failed", exc)
        return "accepted"


class _WebhookFastPath:
    """Pure ASGI: answers ``POST /twilio-webhook-opt`` directly, everything else goes on."""

    def __init__(self, app: ASGIApp, webhook: _TwilioWebhook) -> None:
        self.app = app
        self.webhook = webhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != WEBHOOK_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        response: Response
        try:
            response = await self.webhook.handle(Request(scope, receive))
        except WaSessionsError as exc:
            response = errors.response_for(exc)
        except Exception as exc:
            errors.log_unexpected("webhook failed", exc)
            response = errors.error_response(errors.InternalError.code, "internal error", 500)
        await response(scope, receive, send)


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
