"""What the workers do, as plain functions over explicit dependencies (actors only call these).

``drain_conversation`` is the per-phone actor's body: it takes the conversation's lease and
applies its inbox in order, each batch fenced by the lease token and acknowledged in the same
Lua step that commits it. Whatever runs it, however often and on whichever host, each entry is
applied once and in acceptance order. A drain that dies leaves its lease to lapse; the re-drive
pass (``redrive``) wakes the conversation again within a lease period.

A drain is a chain of ``drain_step`` calls, one round trip each: the first takes the lease and
applies the first batch of the inbox; each next one commits what the drain did since (the
effects of the batch's messages), then applies the next batch or gives the lease up. One
message for an idle phone therefore costs two round trips (one without effects).

With effects configured (an order extractor and a reply sender), applying an inbound text or
image message also queues its effects, and the drain runs those of the whole batch
(``effects.run_effects``: one reply per session per batch) before the next step commits them
and applies anything newer: a conversation's replies follow the messages they answer, and a
drain that finds effects left by a dead one finishes those first.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from wa_sessions import metrics
from wa_sessions.errors import SessionNotFound
from wa_sessions.orders.extractor import OrderExtractor
from wa_sessions.replies.sender import OutboundSender
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.redis.inbox import Inbox
from wa_sessions.statemachine.redis.store import DrainPolicy, DrainStep, EntryKind, EntryResult
from wa_sessions.statemachine.service import SessionService, new_session_id
from wa_sessions.workers.effects import (
    Effects,
    EffectsBatch,
    drop_effects,
    labelled,
    run_effects,
)

log = logging.getLogger(__name__)


@dataclass
class WorkerDeps:
    service: SessionService
    inbox: Inbox
    #: Enqueues a drain wake-up for a conversation key (the actor's ``send``).
    wake: Callable[[str], None]
    lease_seconds: float = 5.0
    batch_size: int = 100
    #: With both set, inbound text and image messages get order extraction and a reply.
    extractor: OrderExtractor | None = None
    sender: OutboundSender | None = None
    reply_templates: ReplyTemplates = field(default_factory=ReplyTemplates)
    #: Age (ms) of the oldest wake-up waiting in Dramatiq's queue, None when it is empty; the
    #: re-drive pass keeps wake flags alive longer than that.
    queued_wake_age_ms: Callable[[], int | None] | None = None

    @property
    def lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)

    @property
    def effects(self) -> Effects | None:
        if self.extractor is None or self.sender is None:
            return None
        return Effects(self.extractor, self.sender, self.reply_templates)

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


@dataclass
class DrainReport:
    applied: int = 0
    outcome: str = "drained"
    results: list[EntryResult] = field(default_factory=list)
    #: Messages whose effects this drain committed (or dropped, with effects off).
    effects: int = 0


_KIND_TRIGGER = {EntryKind.COMPLETE: Trigger.COMPLETE.value, EntryKind.EXPIRE: Trigger.EXPIRE.value}


def drain_conversation(deps: WorkerDeps, conv: str) -> DrainReport:
    """Applies every waiting entry of one conversation, in order, while holding its lease;
    pending effects first, and each batch's effects before the next batch."""
    service = deps.service
    store = service.store
    token = secrets.token_hex(16)
    report = DrainReport()
    effects = deps.effects
    policy = deps.policy(effects)
    ids = _SessionIds()
    now_ms = service.now_ms()
    step = store.drain_step(conv, token, policy, acquire=True, now_ms=now_ms, id_base=ids.base)
    if step.status == "busy":
        # Another drain holds the lease; it re-checks the inbox before letting go.
        report.outcome = "busy"
        labelled(metrics.DRAINS, "busy").inc()
        return report
    while step.status == "ok":
        _observe(step, now_ms, report)
        ids.count(step)
        if step.released:
            labelled(metrics.DRAINS, "drained").inc()
            return report
        batch: EffectsBatch | None = None
        if step.effects:
            if effects is None:
                log.warning("dropped pending effects: this worker has no extractor or sender")
                batch = drop_effects(service, step)
            else:
                batch = run_effects(
                    service, effects, conv, token, step, lease_seconds=deps.lease_seconds
                )
                if batch is None:
                    break
        now_ms = service.now_ms()
        step = store.drain_step(
            conv,
            token,
            policy,
            acquire=False,
            now_ms=now_ms,
            id_base=ids.base,
            commit=batch.commit if batch is not None else None,
        )
        if batch is not None and step.status == "ok":
            report.effects += len(batch.commit.records)
            if effects is not None:
                batch.count(effects, step.committed)
    return _lease_lost(report)


class _SessionIds:
    """The ids a drain gives the sessions it opens: one random UUID, then counted up in its
    last four hex digits by the drain step (a fresh one before the counter would wrap)."""

    def __init__(self) -> None:
        self._renew()

    def _renew(self) -> None:
        self._random = new_session_id()[:-4]
        self._opened = 0

    @property
    def base(self) -> str:
        return f"{self._random}{self._opened:04x}"

    def count(self, step: DrainStep) -> None:
        self._opened += sum(result.created for result in step.results)
        if self._opened > 0xFF00:
            self._renew()


def _lease_lost(report: DrainReport) -> DrainReport:
    report.outcome = "lease_lost"
    labelled(metrics.DRAINS, "lease_lost").inc()
    log.warning("drain lost its lease; another drain continues the inbox")
    return report


def _observe(step: DrainStep, now_ms: int, report: DrainReport) -> None:
    """Counts one step's applied entries (each counter once per step)."""
    if not step.results:
        return
    messages: Counter[tuple[str, str]] = Counter()
    started = 0
    for result in step.results:
        report.results.append(result)
        if result.status == "bad":
            log.error("dropped a malformed inbox entry")
            continue
        report.applied += 1
        started += result.created
        if result.kind is EntryKind.MESSAGE:
            messages[result.direction, result.message_type] += 1
            metrics.QUEUE_LAG.observe(max(0, now_ms - result.accepted_ms) / 1000)
            continue
        # Session ends are counted from the store's ended-events list, whichever path ended them.
        trigger = _KIND_TRIGGER.get(result.kind, "unknown")
        outcome = result.detail
        if outcome in ("completed", "expired"):
            metrics.OPERATIONS.labels(trigger, "applied").inc()
        else:
            metrics.OPERATIONS.labels(
                trigger, "invalid" if outcome.startswith("invalid") else outcome
            ).inc()
    if started:
        metrics.SESSIONS_STARTED.inc(started)
    for (direction, kind), n in messages.items():
        labelled(metrics.MESSAGES, direction, kind).inc(n)


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
