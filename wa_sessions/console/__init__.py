"""The operators' console: server-rendered pages under ``/console`` in the web process (Jinja2
templates, vendored htmx for partial updates and server-sent events), behind a sign-in.
``install_console`` adds it to the app; docs/CONSOLE.md describes it and its security model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from wa_sessions.analysis.service import SessionAnalyses
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.config import Settings
from wa_sessions.console.analytics import analytics_routes
from wa_sessions.console.auth import ConsoleAuth, ConsoleSessions, OperatorDirectory
from wa_sessions.console.context import ConsoleContext
from wa_sessions.console.conversation import ConversationReader
from wa_sessions.console.conversation_routes import conversation_routes
from wa_sessions.console.listing import SessionListing
from wa_sessions.console.live import ChangeFeed
from wa_sessions.console.media import TwilioMedia
from wa_sessions.console.pages import PREFIX, Pages, build_templates, install_error_pages
from wa_sessions.console.routes import session_routes, sign_in_routes
from wa_sessions.console.throttle import SignInThrottle
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.takeover import TakeoverService

__all__ = ["ConsoleDeps", "install_console"]


@dataclass(frozen=True)
class ConsoleDeps:
    """What the console needs from the composition root. ``pubsub_redis`` gives the client of
    the process' one live-update subscription (built now, connected on first use)."""

    settings: Settings
    service: SessionService
    pubsub_redis: Callable[[], redis.asyncio.Redis]
    media: TwilioMedia | None = None


def install_console(
    app: FastAPI,
    deps: ConsoleDeps,
    takeover: TakeoverService,
    analyses: SessionAnalyses | None = None,
    archive: ArchiveReader | None = None,
) -> ConsoleContext:
    """Adds the console's routes, static files and error pages to ``app``; operators take
    sessions over and reply through ``takeover`` and analyse them through ``analyses`` (the
    session API's own); a session Redis no longer holds is read from ``archive``."""
    settings, service = deps.settings, deps.service
    store = service.store
    app.state.console_auth = ConsoleAuth(
        sessions=ConsoleSessions(
            store.client, store.keys, int(settings.console_session_hours * 3600)
        ),
        directory=OperatorDirectory(settings.admin_token, settings.operator_tokens),
        secure_cookie=settings.public_base_url.lower().startswith("https://"),
        throttle=SignInThrottle(
            store.client, store.keys, settings.console_sign_in_failures_per_minute
        ),
        forwarded_proxy_count=settings.trusted_proxies,
    )
    pages = Pages(build_templates())
    ctx = ConsoleContext(
        settings=settings,
        service=service,
        takeover=takeover,
        pages=pages,
        listing=SessionListing(store, default_business=service.business_number),
        conversations=ConversationReader(store),
        feed=ChangeFeed(deps.pubsub_redis, store.keys.console_channel),
        media=deps.media,
        analyses=analyses,
        archive=archive,
    )
    install_error_pages(app, pages)
    app.include_router(sign_in_routes(ctx))
    app.include_router(session_routes(ctx))
    app.include_router(analytics_routes(ctx))
    app.include_router(conversation_routes(ctx))
    app.mount(
        f"{PREFIX}/static",
        StaticFiles(packages=[("wa_sessions.console", "static")]),
        name="console-static",
    )
    app.state.console = ctx
    return ctx
