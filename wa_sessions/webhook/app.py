"""The HTTP entrypoint: Twilio's signed webhook into the conversation inbox, the session API,
health and metrics. ``create_app`` builds it from values the composition root hands in.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from wa_sessions import __version__
from wa_sessions.config import STATUS_CALLBACK_PATH
from wa_sessions.errors import (
    InboxFull,
    SessionNotFound,
)
from wa_sessions.metrics import render_metrics
from wa_sessions.statemachine.models import SessionStatus, SessionSummary
from wa_sessions.statemachine.redis.store import IngestOutcome, to_ms
from wa_sessions.webhook import errors
from wa_sessions.webhook.docs import install_docs
from wa_sessions.webhook.endpoint import (
    ERROR,
    TWIML_EMPTY,
    TwilioEndpoint,
    TwilioRequest,
    WebDeps,
    read_signed_form,
)
from wa_sessions.webhook.errors import (
    ServiceUnavailableError,
    UnauthorizedError,
    storage_unavailable,
)
from wa_sessions.webhook.schemas import (
    ActiveSessions,
    Health,
    SessionDetail,
    SessionEnded,
    SessionList,
    SessionView,
)
from wa_sessions.webhook.status import install_status_callback
from wa_sessions.webhook.twilio import (
    parse_inbound,
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
MAX_PAGE = 1000
#: Redis range indexes are 64-bit: an unbounded offset would make the page read fail (a 500).
MAX_OFFSET = 1_000_000_000


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
        # Served by ``docs.install_docs`` with vendored assets instead of FastAPI's CDN pages.
        docs_url=None,
        redoc_url=None,
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
    app.twilio_endpoints[STATUS_CALLBACK_PATH] = install_status_callback(app, deps)
    app.include_router(_session_api(deps))
    app.include_router(_operations(deps))
    install_docs(app)
    return app


# ---- Twilio webhook ------------------------------------------------------------------------


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
        try:
            result = await self.deps.inbox.accept(
                conversation.key, message, accepted_ms=to_ms(accepted_at)
            )
        except RedisError as exc:
            if storage_unavailable(exc):
                raise ServiceUnavailableError("storage is unavailable; retry later") from exc
            raise
        if result is IngestOutcome.FULL:
            raise InboxFull("this conversation has too many unprocessed messages; retry later")
        if result is IngestOutcome.DUPLICATE:
            return "duplicate"
        return "accepted"


_WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Accepted (or already accepted): empty TwiML.",
        "content": {"text/xml": {"example": TWIML_EMPTY.decode()}},
    },
    400: {**ERROR, "description": "Missing or malformed field."},
    403: {
        **ERROR,
        "description": "Missing or invalid X-Twilio-Signature, or foreign account.",
    },
    413: {**ERROR, "description": "Body over MAX_BODY_BYTES."},
    429: {**ERROR, "description": "The conversation's inbox is full."},
    503: {
        **ERROR,
        "description": "Redis unavailable; Twilio should retry or use its fallback.",
    },
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
    described: dict[int | str, dict[str, Any]] = {code: dict(ERROR) for code in codes}
    # Declaring a default error also keeps FastAPI from advertising its 422 (we answer 400).
    described["default"] = {**ERROR, "description": "Any error, as a JSON error body."}
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

    @router.get("/healthz", responses={503: ERROR}, summary="Ready when Redis answers")
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
        body, content_type = render_metrics(
            deps.scrape_collectors, multiprocess_dir=deps.settings.prometheus_multiproc_dir
        )
        return Response(body, media_type=content_type)

    return router
