"""The composition root's builders for the ``outbox`` process (its runner over the archive
and, with ``EVENTS_WEBHOOK_URL``, the outgoing events) and the archive's erasure command;
apart from ``bootstrap`` to keep each module readable. Nothing is built at import time."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import redis.asyncio

from wa_sessions.archive.db import build_engine
from wa_sessions.archive.maintenance import Erasure
from wa_sessions.archive.maintenance import erase_phone as erase_phone_everywhere
from wa_sessions.archive.writer import ArchiveConsumer, ArchiveWriter
from wa_sessions.bootstrap import async_redis_client, build_service
from wa_sessions.bootstrap_externals import build_events_consumer
from wa_sessions.config import Settings
from wa_sessions.outbox.entry import OutboxConsumer
from wa_sessions.outbox.runner import OutboxPolicy, OutboxRunner
from wa_sessions.redaction import install_log_redaction
from wa_sessions.statemachine.service import SessionService


@dataclass(frozen=True)
class OutboxProcess:
    """The ``outbox`` process: its runner over the consumers, and what to close after it."""

    runner: OutboxRunner
    service: SessionService
    client: redis.asyncio.Redis

    async def aclose(self) -> None:
        await self.client.aclose()
        self.service.store.client.close()


def outbox_consumers(
    settings: Settings, service: SessionService, client: redis.asyncio.Redis
) -> list[OutboxConsumer]:
    """The outbox's consumers, one per group of ``outbox_groups``: the SQL archive, and the
    outgoing events when ``EVENTS_WEBHOOK_URL`` is set (over ``client``, which decodes)."""
    writer = ArchiveWriter(build_engine(settings.database_url))
    consumers: list[OutboxConsumer] = [ArchiveConsumer(service.store, writer)]
    events = build_events_consumer(settings, client)
    if events is not None:
        consumers.append(events)
    return consumers


def build_outbox(settings: Settings) -> OutboxProcess:
    """The runner of ``python -m wa_sessions.outbox``; its consumer name is the host's unless
    ``OUTBOX_CONSUMER_NAME`` says otherwise (a restart on the same host resumes its entries)."""
    install_log_redaction()
    service = build_service(settings)
    client = async_redis_client(settings, decode_responses=True)
    policy = OutboxPolicy(
        batch=settings.outbox_batch_size,
        claim_idle_ms=int(settings.outbox_claim_idle_seconds * 1000),
        retry_seconds=settings.outbox_retry_seconds,
        trim_interval_seconds=settings.outbox_trim_interval_seconds,
    )
    runner = OutboxRunner(
        client,
        service.store,
        outbox_consumers(settings, service, client),
        policy,
        consumer_name=settings.outbox_consumer_name or socket.gethostname(),
    )
    return OutboxProcess(runner, service, client)


def erase_phone(settings: Settings, phone: str) -> Erasure:
    """A customer's erasure (``wa-sessions db erase``): every business number the service has
    seen (the analytics' set) and the configured one. Raises ``InvalidPhoneNumber`` for a number
    that does not parse."""
    service = build_service(settings)
    engine = build_engine(settings.database_url)
    try:
        customer = service.conversation(phone).customer
        client = service.store.client
        businesses = {str(b) for b in client.smembers(service.store.keys.rollup_businesses)}
        businesses.add(service.business_number)
        return erase_phone_everywhere(service.store, engine, customer, businesses)
    finally:
        engine.dispose()
        service.store.client.close()
