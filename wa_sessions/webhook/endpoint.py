"""What every endpoint Twilio calls shares: its dependencies, the raw ASGI request, the signed
form, empty TwiML answers and per-outcome counting. ``app`` and ``status`` build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Any

from fastapi import Request
from prometheus_client.registry import Collector
from starlette.datastructures import URL
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from wa_sessions.analysis.offline import OfflineAnalyser
from wa_sessions.analysis.service import SessionAnalyses
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.config import Settings
from wa_sessions.console import ConsoleDeps
from wa_sessions.errors import (
    BadRequest,
    InboxFull,
    InvalidPhoneNumber,
    InvalidSignature,
    RateLimited,
    WaSessionsError,
)
from wa_sessions.metrics import WEBHOOK_LATENCY, WEBHOOK_REQUESTS
from wa_sessions.statemachine.conversations import ConversationStarter
from wa_sessions.statemachine.redis.analysis_store import RedisAnalysisStore
from wa_sessions.statemachine.redis.inbox import AsyncInbox
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.takeover import TakeoverService
from wa_sessions.webhook import errors
from wa_sessions.webhook.errors import PayloadTooLargeError, ServiceUnavailableError
from wa_sessions.webhook.schemas import ErrorBody
from wa_sessions.webhook.signatures import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    SignatureChecker,
    check_account,
    signed_url,
)
from wa_sessions.webhook.twilio import FormParams, check_account_sid, decode_form

TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
#: An error answer in the OpenAPI schema of Twilio's endpoints.
ERROR: dict[str, Any] = {"model": ErrorBody}


@dataclass(frozen=True)
class WebDeps:
    """What the HTTP layer needs, built by the composition root.

    The inbox's ingest script enqueues drain wake-ups itself (its ``wake_message``), so the
    webhook never imports the workers. ``scrape_collectors`` read shared state (Redis) when
    ``/metrics`` is scraped.
    """

    settings: Settings
    service: SessionService
    inbox: AsyncInbox
    scrape_collectors: tuple[Collector, ...] = ()
    #: The operators' console under ``/console`` (None: not served).
    console: ConsoleDeps | None = None
    #: Agent takeover; by default over ``service``, waking drains as the inbox does.
    takeover: TakeoverService | None = None
    #: Session analyses; by default over ``service`` with the offline analyser.
    analyses: SessionAnalyses | None = None
    #: Business-initiated messages (``POST /conversations``); by default over ``service``.
    conversations: ConversationStarter | None = None
    #: The SQL archive the session API and the console fall back to (None: Redis only).
    archive: ArchiveReader | None = None

    def __post_init__(self) -> None:
        if self.inbox.wake_message is None:
            raise ValueError("WebDeps needs an inbox that enqueues drain wake-ups itself")
        if self.takeover is None:
            default = TakeoverService(
                self.service,
                wake_message=self.inbox.wake_message,
                wake_ttl_ms=self.inbox.policy.wake_ttl_ms,
                max_reply_chars=self.settings.operator_reply_max_chars,
            )
            object.__setattr__(self, "takeover", default)
        if self.conversations is None:
            starter = ConversationStarter(
                self.service,
                wake_message=self.inbox.wake_message,
                wake_ttl_ms=self.inbox.policy.wake_ttl_ms,
            )
            object.__setattr__(self, "conversations", starter)
        if self.analyses is None:
            store = RedisAnalysisStore(self.service.store.client, self.service.store.keys)
            analyses = SessionAnalyses(self.service, store, OfflineAnalyser())
            object.__setattr__(self, "analyses", analyses)

    @property
    def starter(self) -> ConversationStarter:
        """``conversations``, never None once built."""
        assert self.conversations is not None
        return self.conversations

    @property
    def takeovers(self) -> TakeoverService:
        """``takeover``, never None once built."""
        assert self.takeover is not None
        return self.takeover

    @property
    def analysis(self) -> SessionAnalyses:
        """``analyses``, never None once built."""
        assert self.analyses is not None
        return self.analyses


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, PayloadTooLargeError):
        return "too_large"
    if isinstance(exc, InvalidSignature):
        return "bad_signature"
    if isinstance(exc, BadRequest | InvalidPhoneNumber):
        return "bad_request"
    if isinstance(exc, InboxFull):
        return "inbox_full"
    if isinstance(exc, RateLimited):
        return "rate_limited"
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

    def joined_header(self, name: bytes) -> str | None:
        """Every line of a repeated header, comma-joined in order (one list, as HTTP reads
        it): a proxy may add its own line rather than append to the client's."""
        values = [value for key, value in self.scope["headers"] if key == name]
        return b", ".join(values).decode("latin-1") if values else None

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
    public URL and every field (403), the account's format (400) and the account (403). A
    repeated field is refused with the encoding (400)."""
    signature = request.header(_SIGNATURE_HEADER)
    if not signature:
        raise InvalidSignature("X-Twilio-Signature header is missing")
    params = decode_form(await request.body(settings.max_body_bytes))
    scope = request.scope
    query = scope.get("query_string", b"").decode("latin-1")
    proxies = 0 if settings.public_base_url else settings.trusted_proxies
    checker.check(
        signed_url(
            # The URL as this server received it, built only when nothing overrides it.
            request_url="" if settings.public_base_url else str(URL(scope=scope)),
            path=scope["path"],
            query=query,
            public_base_url=settings.public_base_url,
            forwarded_proxy_count=proxies,
            forwarded_proto=request.joined_header(b"x-forwarded-proto") if proxies else None,
            forwarded_host=request.joined_header(b"x-forwarded-host") if proxies else None,
        ),
        params,
        signature,
        request.header(_SIGNATURE_SETTINGS_HEADER),
    )
    check_account_sid(params)
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
