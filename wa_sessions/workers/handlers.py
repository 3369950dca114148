"""What the workers do, as plain functions over explicit dependencies (actors only call these).

The drain itself (``drain``) is a coroutine run on the worker process' drain loop
(``runner.DrainRunner``); ``drain_conversation`` runs one to completion from synchronous code
(operator tasks, tests). The re-drive pass and the expiry sweep run in the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio

from wa_sessions import metrics
from wa_sessions.errors import SessionNotFound
from wa_sessions.flows.registry import FlowTemplates
from wa_sessions.orders.extractor import OrderExtractor
from wa_sessions.replies.sender import OutboundSender
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.redis.async_store import AsyncDrainStore
from wa_sessions.statemachine.redis.inbox import DEFAULT_LEASE_SECONDS, Inbox
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import DrainPolicy
from wa_sessions.workers.drain import DrainContext, DrainReport, drain
from wa_sessions.workers.effects import Effects
from wa_sessions.workers.runner import DrainRunner

log = logging.getLogger(__name__)

__all__ = ["DrainReport", "WorkerDeps", "drain_conversation"]


@dataclass
class WorkerDeps:
    service: SessionService
    inbox: Inbox
    #: Enqueues a drain wake-up for a conversation key (the actor's ``send``).
    wake: Callable[[str], None]
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    batch_size: int = 100
    #: With both set, inbound text and image messages get order extraction and a reply.
    extractor: OrderExtractor | None = None
    sender: OutboundSender | None = None
    reply_templates: ReplyTemplates = field(default_factory=ReplyTemplates)
    flow_templates: FlowTemplates = field(default_factory=FlowTemplates)
    #: Age (ms) of the oldest wake-up waiting in Dramatiq's queue, None when it is empty; the
    #: re-drive pass keeps wake flags alive longer than that.
    queued_wake_age_ms: Callable[[], int | None] | None = None
    #: Builds the drain loop's Redis client (called on that loop). Default: the service's
    #: client's host, port, database and credentials.
    async_redis: Callable[[], redis.asyncio.Redis] | None = None
    #: Drains a worker process keeps in flight at once (each may be waiting for OpenAI).
    max_in_flight: int = 256
    _runner: DrainRunner[DrainContext, DrainReport] | None = field(
        default=None, init=False, repr=False
    )

    @property
    def lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)

    @property
    def effects(self) -> Effects | None:
        if self.extractor is None or self.sender is None:
            return None
        return Effects(self.extractor, self.sender, self.reply_templates, flows=self.flow_templates)

    def policy(self, effects: Effects | None) -> DrainPolicy:
        service = self.service
        return DrainPolicy(
            lease_ms=self.lease_ms,
            batch=self.batch_size,
            timeout_ms=service.timeout_ms,
            cap=service.max_messages_per_session,
            keep_ms=service.keep_ms,
            carry=service.carry_over_context_keys,
            effects=effects is not None,
            history=effects.extractor.history_limit if effects is not None else 0,
        )

    async def drain_context(self) -> DrainContext:
        """The drains' context, built on the drain loop."""
        client = self.async_redis() if self.async_redis else _async_twin(self.service)
        effects = self.effects
        return DrainContext(
            store=AsyncDrainStore(client, self.service.store.keys),
            policy=self.policy(effects),
            effects=effects,
            lease_seconds=self.lease_seconds,
            clock=self.service.clock,
        )

    def runner(self) -> DrainRunner[DrainContext, DrainReport]:
        """This process' drain loop, started on first use."""
        if self._runner is None:
            self._runner = DrainRunner(
                drain,
                self.drain_context,
                max_in_flight=self.max_in_flight,
                close_context=_close_context,
            )
        self._runner.start()
        return self._runner

    def close(self, grace_seconds: float = 10.0) -> None:
        if self._runner is not None:
            self._runner.stop(grace_seconds)
            self._runner = None


async def _close_context(ctx: DrainContext) -> None:
    await ctx.store.close()
    if ctx.effects is not None:
        for part in (ctx.effects.extractor, ctx.effects.sender):
            close = getattr(part, "close", None)
            if close is not None:
                await close()


def _async_twin(service: SessionService) -> redis.asyncio.Redis:
    """An asyncio client for the Redis the service's client talks to."""
    kwargs = service.store.client.connection_pool.connection_kwargs
    return redis.asyncio.Redis(
        host=kwargs.get("host", "localhost"),
        port=kwargs.get("port", 6379),
        db=kwargs.get("db", 0),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        socket_timeout=5,
        socket_connect_timeout=2,
        decode_responses=True,
    )


def drain_conversation(deps: WorkerDeps, conv: str) -> DrainReport:
    """Runs one drain of ``conv`` to completion on the worker's drain loop and waits for it."""
    return deps.runner().run(conv)


def request_transition(deps: WorkerDeps, trigger: str, session_id: str, reason: str) -> str:
    """Queues an operator complete/expire behind the conversation's waiting messages, then
    drains here (or leaves it to the drain already running). Returns the operation id."""
    session = deps.service.store.load(session_id, include_messages=False)
    if session is None:
        raise SessionNotFound(f"no session {session_id}")
    conv = Conversation(session.phone_number, session.business_number).key
    op_id, _ = deps.inbox.request(
        conv, trigger, session_id, accepted_ms=deps.service.now_ms(), reason=reason
    )
    drain_conversation(deps, conv)
    return op_id


#: Longest a wake flag is kept alive for a backed-up queue.
MAX_WAKE_TTL_MS = 10 * 60 * 1000


def wake_ttl_ms(lease_ttl_ms: int, queued_age_ms: int | None) -> int:
    """How long a wake flag lives: a lease period, plus twice the age of the oldest queued
    wake-up when Dramatiq's queue is backed up.

    A flag that lapses while its wake-up still waits in the queue lets the phone's next message
    queue another one; under overload every message then queues its own, drains find empty
    inboxes, and the work per message grows just when capacity is short. Kept alive past the
    queue's wait, the flag lets messages pile up behind one wake-up, and the drain that runs
    takes them in one batch, so a backlog makes the work per message smaller, not larger."""
    if not queued_age_ms:
        return lease_ttl_ms
    return min(MAX_WAKE_TTL_MS, lease_ttl_ms + 2 * queued_age_ms)


def redrive(deps: WorkerDeps, *, limit: int = 1000) -> int:
    """Wakes every conversation whose inbox waits with no drain running or queued, and sets
    how long wake flags live until the next pass (``wake_ttl_ms``)."""
    age = deps.queued_wake_age_ms() if deps.queued_wake_age_ms is not None else None
    ttl = wake_ttl_ms(deps.inbox.policy.wake_ttl_ms, age)
    convs = deps.service.store.redrive(wake_ttl_ms=ttl, limit=limit)
    for conv in convs:
        deps.wake(conv)
    if convs:
        metrics.REDRIVES.inc(len(convs))
    return len(convs)


def expire_idle_sessions(deps: WorkerDeps) -> int:
    """The expiry sweep: ends sessions idle past the timeout and purges old ended ones."""
    count = deps.service.cleanup_expired_sessions()
    if count:
        metrics.SWEEP_EXPIRED.inc(count)
    return count
