"""The composition root: the only place that reads settings and builds clients, store and app.

Entry points (uvicorn's ``--factory``, the Dramatiq CLI's ``setup_broker``, the scheduler, the
enqueue script) call in here; nothing creates a Redis client or a broker at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from wa_sessions.config import Settings
from wa_sessions.statemachine.inbox import AsyncInbox, Inbox, InboxPolicy
from wa_sessions.statemachine.service import SessionService

if TYPE_CHECKING:
    from fastapi import FastAPI

    from wa_sessions.workers.handlers import WorkerDeps


def load_settings() -> Settings:
    return Settings()


def redis_client(settings: Settings) -> redis.Redis:
    """One pooled client per process. Short timeouts so a Redis outage fails fast (503 at the
    webhook, a Dramatiq retry in workers) instead of hanging; reconnection is automatic."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
    )


def async_redis_client(settings: Settings) -> redis.asyncio.Redis:
    """The web process' event-loop client for the webhook's hot path (same timeouts)."""
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
    )


def build_service(settings: Settings, client: redis.Redis | None = None) -> SessionService:
    return SessionService(
        client or redis_client(settings),
        business_number=settings.business_number,
        session_timeout_hours=settings.session_timeout_hours,
        carry_over_context_keys=settings.carry_over_context_keys,
        max_messages_per_session=settings.max_messages_per_session,
        retention_days=settings.retention_days,
        default_region=settings.default_region,
        key_prefix=settings.redis_key_prefix,
    )


def build_inbox(settings: Settings, service: SessionService) -> Inbox:
    return Inbox(
        service.store,
        InboxPolicy(
            dedupe_ttl_seconds=settings.dedupe_ttl_seconds,
            max_depth=settings.max_inbox_depth,
            lease_seconds=settings.lease_seconds,
        ),
    )


def build_worker_deps(settings: Settings) -> WorkerDeps:
    from wa_sessions.workers import actors
    from wa_sessions.workers.handlers import WorkerDeps

    service = build_service(settings)
    return WorkerDeps(
        service=service,
        inbox=build_inbox(settings, service),
        wake=actors.wake,
        lease_seconds=settings.lease_seconds,
        batch_size=settings.drain_batch_size,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The web process: uvicorn ``--factory wa_sessions.bootstrap:create_app``."""
    from wa_sessions.webhook import WebDeps
    from wa_sessions.webhook import create_app as create_web_app
    from wa_sessions.workers.broker import AsyncWaker, setup_broker

    settings = (settings or load_settings()).check_secure()
    broker = setup_broker(settings)
    from wa_sessions.workers import actors  # after setup_broker: actors bind to its broker

    service = build_service(settings)
    async_client = async_redis_client(settings)
    return create_web_app(
        WebDeps(
            settings=settings,
            service=service,
            inbox=AsyncInbox(
                async_client, service.store.keys, build_inbox(settings, service).policy
            ),
            wake=AsyncWaker(broker, actors.drain_conversation, async_client),
        )
    )
