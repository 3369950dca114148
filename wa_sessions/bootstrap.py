"""The composition root: the only place that builds clients, stores, the broker and the app.

Every process starts here: the web process through uvicorn's ``--factory create_app``, worker
processes through the Dramatiq CLI's hook (``dramatiq wa_sessions.bootstrap:setup_worker
wa_sessions.workers.actors``), the scheduler and the operators' script through ``build_worker``,
the ``outbox`` process and the archive's commands through ``bootstrap_outbox``.
Nothing here, or anywhere in the package, builds a client or a broker at import time.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass

import dramatiq
import redis
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker
from fastapi import FastAPI
from prometheus_client.registry import Collector
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from wa_sessions.archive.db import build_engine
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.bootstrap_externals import (
    build_analyses,
    build_extractor,
    build_media_fetcher,
    build_reply_templates,
    build_sender,
)
from wa_sessions.config import DEV_ENV_FILE, InsecureSettings, Settings
from wa_sessions.console import ConsoleDeps
from wa_sessions.console.media import TwilioMedia
from wa_sessions.events.store import GROUP as EVENTS_GROUP
from wa_sessions.flows.registry import FlowTemplates, load_templates
from wa_sessions.languages.detect import warm_up as warm_up_languages
from wa_sessions.metrics.collectors import RedisStateCollector
from wa_sessions.metrics.outbox import OutboxBacklogCollector
from wa_sessions.metrics.outgoing_events import EventsBacklogCollector
from wa_sessions.redaction import install_log_redaction
from wa_sessions.statemachine.conversations import ConversationStarter
from wa_sessions.statemachine.redis.inbox import AsyncInbox, Inbox, InboxPolicy
from wa_sessions.statemachine.redis.keys import OUTBOX_ARCHIVE_GROUP
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.takeover import TakeoverService
from wa_sessions.webhook import WebDeps
from wa_sessions.webhook import create_app as create_web_app
from wa_sessions.webhook.server import DeadlineHttpToolsProtocol, raise_open_file_limit
from wa_sessions.workers import broker as dramatiq_broker
from wa_sessions.workers.actors import DRAIN_CONVERSATION, Actors, declare_actors, drain_sender
from wa_sessions.workers.broker import DrainWakeMessages, StopDrainLoop, queued_age_ms
from wa_sessions.workers.handlers import WorkerDeps
from wa_sessions.workers.nudges import NudgePolicy
from wa_sessions.workers.queues import QueueKeys

log = logging.getLogger(__name__)


def outbox_groups(settings: Settings) -> tuple[str, ...]:
    """The outbox's consumer groups the deployment runs (the backlog metrics report each one):
    the archive always, the outgoing events when ``EVENTS_WEBHOOK_URL`` is set."""
    if settings.sends_events:
        return (OUTBOX_ARCHIVE_GROUP, EVENTS_GROUP)
    return (OUTBOX_ARCHIVE_GROUP,)


def load_settings() -> Settings:
    """The service's settings, from the environment only."""
    return Settings.load()


def load_serving_settings() -> Settings:
    """The settings of a process that serves (web, worker, scheduler), checked before it builds
    anything: outside development an insecure configuration ends the process at start with
    one line naming every problem on stderr (exit 2), rather than at its first message."""
    settings = load_settings()
    try:
        return settings.check_secure()
    except InsecureSettings as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def load_operator_settings() -> Settings:
    """The settings of a command run by a person next to ``./run serve``: the environment,
    completed in development by the values ``serve`` saved (``.run/dev.env``: its Redis, its
    secrets), so a script reaches the service's Redis rather than another one on localhost."""
    return Settings.load(dev_env_file=DEV_ENV_FILE)


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


def async_redis_client(
    settings: Settings, *, decode_responses: bool = False
) -> redis.asyncio.Redis:
    """An event-loop client (the webhook's, the drain loop's), with the same timeouts."""
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        decode_responses=decode_responses,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
    )


def inbox_policy(settings: Settings) -> InboxPolicy:
    return InboxPolicy(
        dedupe_ttl_seconds=settings.dedupe_ttl_seconds,
        max_depth=settings.max_inbox_depth,
        lease_seconds=settings.lease_seconds,
        messages_per_minute=settings.ingest_messages_per_minute,
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
        analytics_retention_days=settings.analytics_retention_days,
    )


def build_takeover(settings: Settings, service: SessionService) -> TakeoverService:
    """Take over, hand back, reply: an operator's reply wakes its conversation's drain from
    the push itself (Dramatiq's message layout), so no process needs a broker to reply."""
    return TakeoverService(
        service,
        wake_message=DrainWakeMessages(QueueKeys(), DRAIN_CONVERSATION),
        wake_ttl_ms=inbox_policy(settings).wake_ttl_ms,
        max_reply_chars=settings.operator_reply_max_chars,
    )


def build_flow_templates(settings: Settings) -> FlowTemplates:
    """The conversation templates, every file read and validated now (a bad one stops the
    start): the worker follows them, the web process and the script start them."""
    return load_templates(settings.conversation_template, settings.conversation_templates_dir)


def build_conversations(settings: Settings, service: SessionService) -> ConversationStarter:
    """Business-initiated messages (``POST /conversations``, the operators' script), waking
    the phone's drain from the push like an operator's reply; a conversation template among
    the same ones the worker loads."""
    return ConversationStarter(
        service,
        wake_message=DrainWakeMessages(QueueKeys(), DRAIN_CONVERSATION),
        wake_ttl_ms=inbox_policy(settings).wake_ttl_ms,
        templates=build_flow_templates(settings),
    )


def build_inbox(settings: Settings, service: SessionService) -> Inbox:
    return Inbox(service.store, inbox_policy(settings))


def build_broker(settings: Settings) -> RedisBroker:
    """The Dramatiq broker of a process that sends or runs actors. Every such process builds
    one first, so this is also where it masks phone numbers in all of its log records:
    Dramatiq logs a failed message with its arguments, a conversation key."""
    install_log_redaction()
    return dramatiq_broker.build_broker(
        settings.redis_url, one_message_per_thread=not settings.dramatiq_queue_prefetch
    )


def build_worker_deps(settings: Settings, broker: RedisBroker) -> WorkerDeps:
    """What the handlers run over in a worker or the scheduler; wake-ups go to ``broker``."""
    service = build_service(settings)
    drain_redis = async_redis_client(settings, decode_responses=True)
    queue = QueueKeys()
    return WorkerDeps(
        service=service,
        inbox=build_inbox(settings, service),
        wake=drain_sender(broker),
        lease_seconds=settings.lease_seconds,
        batch_size=settings.drain_batch_size,
        # Built now, connected on the drain loop on first use (redis.asyncio connects lazily).
        async_redis=lambda: drain_redis,
        max_in_flight=settings.worker_max_in_flight,
        extractor=build_extractor(settings, drain_redis),
        sender=build_sender(settings),
        reply_templates=build_reply_templates(settings),
        flow_templates=build_flow_templates(settings),
        queued_wake_age_ms=lambda: queued_age_ms(broker.client, queue),
    )


def build_nudge_policy(settings: Settings) -> NudgePolicy:
    """The scheduler's nudge before expiry (``NUDGE_BEFORE_EXPIRY_MINUTES``: 0 turns it off)."""
    return NudgePolicy(
        before_minutes=settings.nudge_minutes(settings.session_timeout_hours),
        content_sid=settings.nudge_content_sid,
    )


@dataclass(frozen=True)
class WorkerProcess:
    """A process that runs or sends the actors: its broker, the handlers' dependencies and the
    actors declared on that broker over them."""

    settings: Settings
    broker: RedisBroker
    deps: WorkerDeps
    actors: Actors

    def close(self) -> None:
        """Stops the drain loop and closes the broker's and the service's Redis connections."""
        self.deps.close()
        self.broker.close()
        self.deps.service.store.client.close()


def build_worker(settings: Settings) -> WorkerProcess:
    """Broker, dependencies and actors for a worker, the scheduler or the operators' script."""
    broker = build_broker(settings)
    deps = build_worker_deps(settings, broker)
    broker.add_middleware(StopDrainLoop(deps.close))
    return WorkerProcess(settings, broker, deps, declare_actors(broker, deps))


def setup_worker() -> WorkerProcess:
    """The Dramatiq CLI's broker hook, run in every worker process before it imports the
    modules named after it: ``dramatiq wa_sessions.bootstrap:setup_worker
    wa_sessions.workers.actors``. The CLI ignores what a hook returns and takes Dramatiq's
    global broker, so this sets it; the actors are already declared on it, and importing
    ``wa_sessions.workers.actors`` afterwards builds nothing. What it built is returned for
    callers that close it (tests)."""
    worker = build_worker(load_serving_settings())
    dramatiq.set_broker(worker.broker)
    # The language models take seconds to load: not on the first customer's message.
    threading.Thread(target=warm_up_languages, name="languages-warm-up", daemon=True).start()
    return worker


def create_app(settings: Settings | None = None) -> FastAPI:
    """The web process: uvicorn ``--factory wa_sessions.bootstrap:create_app``. It needs no
    Dramatiq broker: the ingest script writes drain wake-ups in Dramatiq's layout itself. It
    also readies the process for many connections: the request deadline of the Procfile's
    protocol class (``--http``), and the open files limit raised to its hard limit."""
    settings = settings.check_secure() if settings is not None else load_serving_settings()
    install_log_redaction()
    if settings.trust_proxy_headers:
        log.warning("TRUST_PROXY_HEADERS is deprecated: set FORWARDED_PROXY_COUNT=1 instead")
    # uvicorn calls this factory after importing its protocol class and before serving.
    DeadlineHttpToolsProtocol.configure(request_timeout_seconds=settings.request_timeout_seconds)
    raise_open_file_limit()
    service = build_service(settings)
    queue = QueueKeys()
    return create_web_app(
        WebDeps(
            settings=settings,
            service=service,
            inbox=AsyncInbox(
                async_redis_client(settings),
                service.store.keys,
                inbox_policy(settings),
                wake_message=DrainWakeMessages(queue, DRAIN_CONVERSATION),
            ),
            scrape_collectors=scrape_collectors(settings, service, queue),
            console=build_console(settings, service),
            takeover=build_takeover(settings, service),
            conversations=build_conversations(settings, service),
            analyses=build_analyses(
                settings, service, async_redis_client(settings, decode_responses=True)
            ),
            archive=ArchiveReader(build_engine(settings.database_url)),
        )
    )


def scrape_collectors(
    settings: Settings, service: SessionService, queue: QueueKeys
) -> tuple[Collector, ...]:
    """What ``/metrics`` reads from Redis at scrape time: the sessions, inboxes and queue, the
    outbox's backlog per consumer group, and the outgoing events' backlog when events are sent."""
    collectors: list[Collector] = [
        RedisStateCollector(service.store, queues=(queue,)),
        OutboxBacklogCollector(service.store, outbox_groups(settings)),
    ]
    if settings.sends_events:
        store = service.store
        collectors.append(EventsBacklogCollector(store.client, store.keys, EVENTS_GROUP))
    return tuple(collectors)


def build_console(settings: Settings, service: SessionService) -> ConsoleDeps:
    """The console's dependencies: its live-update subscription gets a client of its own (a
    subscribed connection serves nothing else), without a read timeout (it waits for
    messages); the media proxy needs the Twilio account's credentials."""
    pubsub = redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
    )
    media = None
    if settings.sends_through_twilio:
        media = TwilioMedia(build_media_fetcher(settings), account_sid=settings.twilio_account_sid)
    return ConsoleDeps(settings=settings, service=service, pubsub_redis=lambda: pubsub, media=media)
