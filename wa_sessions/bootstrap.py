"""The composition root: the only place that reads settings and builds clients, store and app.

Entry points (uvicorn's ``--factory``, the Dramatiq CLI's ``setup_broker``, the scheduler, the
enqueue script) call in here; nothing creates a Redis client or a broker at import time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from wa_sessions.config import Settings
from wa_sessions.orders.extractor import OrderExtractor
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.replies.sender import LogSender, OutboundSender
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.redis.inbox import AsyncInbox, Inbox, InboxPolicy
from wa_sessions.statemachine.service import SessionService

if TYPE_CHECKING:
    from fastapi import FastAPI

    from wa_sessions.workers.handlers import WorkerDeps

log = logging.getLogger(__name__)


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


def build_extractor(settings: Settings) -> OrderExtractor:
    """OpenAI when ``OPENAI_API_KEY`` is set, else the offline rule-based extractor."""
    if not settings.openai_api_key:
        return RuleBasedOrderExtractor()
    from wa_sessions.orders.openai import OpenAIOrderExtractor, TwilioMediaAuth

    media_auth = None
    if settings.twilio_account_sid and settings.twilio_auth_token:
        media_auth = TwilioMediaAuth(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            host=urlsplit(settings.twilio_api_base_url).hostname or "api.twilio.com",
        )
    return OpenAIOrderExtractor(
        api_key=settings.openai_api_key,
        model=settings.openai_model,
        base_url=settings.openai_base_url or None,
        policy=RetryPolicy(
            timeout_seconds=settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries,
            budget_seconds=settings.openai_retry_budget_seconds,
        ),
        history_limit=settings.openai_history_messages,
        media_auth=media_auth,
    )


def build_sender(settings: Settings) -> OutboundSender:
    """Twilio when the account SID and auth token are both set, else replies are only logged."""
    if not settings.sends_through_twilio:
        return LogSender()
    from wa_sessions.replies.twilio import TwilioSender

    if settings.status_callback_url is None:
        log.warning("PUBLIC_BASE_URL is not set: replies are sent without status callbacks")
    return TwilioSender(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        status_callback_url=settings.status_callback_url,
        api_base_url=settings.twilio_api_base_url,
        policy=RetryPolicy(
            timeout_seconds=settings.twilio_timeout_seconds,
            max_retries=settings.twilio_max_retries,
            budget_seconds=settings.twilio_retry_budget_seconds,
        ),
    )


def build_reply_templates(settings: Settings) -> ReplyTemplates:
    return ReplyTemplates(
        order=settings.reply_order_template,
        empty_order=settings.reply_empty_order_template,
        nothing=settings.reply_nothing_template,
    )


def build_worker_deps(settings: Settings) -> WorkerDeps:
    from wa_sessions.workers import actors
    from wa_sessions.workers.broker import queued_age_ms, require_broker
    from wa_sessions.workers.handlers import WorkerDeps

    broker = require_broker()

    service = build_service(settings)
    return WorkerDeps(
        service=service,
        inbox=build_inbox(settings, service),
        wake=actors.wake,
        lease_seconds=settings.lease_seconds,
        batch_size=settings.drain_batch_size,
        extractor=build_extractor(settings),
        sender=build_sender(settings),
        reply_templates=build_reply_templates(settings),
        queued_wake_age_ms=lambda: queued_age_ms(broker),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The web process: uvicorn ``--factory wa_sessions.bootstrap:create_app``."""
    from wa_sessions.metrics import register_collectors
    from wa_sessions.webhook import WebDeps
    from wa_sessions.webhook import create_app as create_web_app
    from wa_sessions.workers.broker import DrainWakeMessages, setup_broker

    settings = (settings or load_settings()).check_secure()
    broker = setup_broker(settings)
    from wa_sessions.workers import actors  # after setup_broker: actors bind to its broker

    service = build_service(settings)
    register_collectors(service.store)
    async_client = async_redis_client(settings)
    return create_web_app(
        WebDeps(
            settings=settings,
            service=service,
            inbox=AsyncInbox(
                async_client,
                service.store.keys,
                build_inbox(settings, service).policy,
                wake_message=DrainWakeMessages(broker, actors.drain_conversation),
            ),
        )
    )
