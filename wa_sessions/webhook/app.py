"""The HTTP entrypoint: Twilio's signed webhook into the conversation inbox, the session API,
health and metrics. ``create_app`` builds it from values the composition root hands in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.security import HTTPBearer
from redis.exceptions import RedisError
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from wa_sessions import __version__
from wa_sessions.config import STATUS_CALLBACK_PATH
from wa_sessions.console import install_console
from wa_sessions.console.context import ConsoleContext
from wa_sessions.metrics import render_metrics
from wa_sessions.security_headers import SecurityHeaders
from wa_sessions.webhook import errors
from wa_sessions.webhook.analysis_api import analysis_api
from wa_sessions.webhook.auth import require_bearer
from wa_sessions.webhook.conversations_api import conversations_api
from wa_sessions.webhook.docs import install_docs
from wa_sessions.webhook.endpoint import ERROR, TwilioEndpoint, WebDeps
from wa_sessions.webhook.errors import ServiceUnavailableError
from wa_sessions.webhook.inbound import WEBHOOK_PATH, install_inbound_webhook
from wa_sessions.webhook.schemas import Health
from wa_sessions.webhook.session_api import session_api
from wa_sessions.webhook.status import install_status_callback


class WebApp(FastAPI):
    """FastAPI with Twilio's endpoints answered ahead of its middleware stack.

    Twilio's POSTs are the hot path (one per message, several status callbacks per reply): they
    go straight to their ``TwilioEndpoint`` as raw ASGI, skipping the error, guard and routing
    layers (which handle nothing there: the endpoints answer their own errors). Their routes are
    still declared (``inbound.py``, ``status.py``), so the OpenAPI schema documents them."""

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
        if console is not None:
            await console.feed.close()
        deps.inbox.close()

    console: ConsoleContext | None = None

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
    # Added last, so outermost: the guard's own 500 gets the headers too.
    app.add_middleware(SecurityHeaders)
    app.twilio_endpoints = {WEBHOOK_PATH: install_inbound_webhook(app, deps)}
    app.twilio_endpoints[STATUS_CALLBACK_PATH] = install_status_callback(app, deps)
    app.include_router(session_api(deps))
    app.include_router(analysis_api(deps))
    app.include_router(conversations_api(deps))
    app.include_router(_operations(deps))
    if deps.console is not None:
        console = install_console(app, deps.console, deps.takeovers, deps.analysis, deps.archive)
    install_docs(app)
    return app


# ---- operations ----------------------------------------------------------------------------


_metrics_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="MetricsToken",
    description="The service's METRICS_TOKEN, when it is set.",
)


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

    token = deps.settings.metrics_token
    # Unset, the endpoint is public (development); production should set METRICS_TOKEN.
    refusal = "a valid metrics bearer token is required"
    guard = [Depends(require_bearer(token, _metrics_bearer, refusal))] if token else []

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus exposition",
        dependencies=guard,
        responses={401: ERROR} if token else None,
    )
    def metrics() -> Response:
        body, content_type = render_metrics(
            deps.scrape_collectors, multiprocess_dir=deps.settings.prometheus_multiproc_dir
        )
        return Response(body, media_type=content_type)

    return router
