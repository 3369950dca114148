"""The per-phone drain: takes the conversation's lease and applies its inbox in order, each batch
fenced by the lease token and acknowledged in the same Lua step that commits it. Whatever runs
it, however often and on whichever host, each entry is applied once and in acceptance order. A
drain that dies leaves its lease to lapse; the re-drive pass wakes the conversation again.

A drain is a chain of ``drain_step`` calls, one round trip each: the first takes the lease and
applies the first batch of the inbox; each next one commits what the drain did since (the
effects of the batch's messages), then applies the next batch or gives the lease up. One
message for an idle phone therefore costs two round trips (one without effects).

With effects configured (an order extractor and a reply sender), applying an inbound text or
image message also queues its effects, and the drain runs those of the whole batch
(``effects.run_effects``: one reply per session per batch) before the next step commits them
and applies anything newer: a conversation's replies follow the messages they answer, and a
drain that finds effects left by a dead one finishes those first.

Drains are coroutines: a worker process runs many at once on its drain loop (``runner``).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from wa_sessions import metrics
from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.ports import DrainStore
from wa_sessions.statemachine.service import new_session_id
from wa_sessions.statemachine.steps import DrainPolicy, DrainStep, EntryResult, to_ms
from wa_sessions.workers.effects import (
    Effects,
    EffectsBatch,
    drop_effects,
    run_effects,
)
from wa_sessions.workers.lease import Lease
from wa_sessions.workers.records import labelled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainContext:
    """What every drain of a worker process shares: the store on the drain loop's Redis client,
    the rules each step passes to Redis, the effects (None: applying only) and the clock."""

    store: DrainStore
    policy: DrainPolicy
    effects: Effects | None
    lease_seconds: float
    clock: Callable[[], datetime]

    def now_ms(self) -> int:
        return to_ms(self.clock())


@dataclass
class DrainReport:
    applied: int = 0
    outcome: str = "drained"
    results: list[EntryResult] = field(default_factory=list)
    #: Messages whose effects this drain committed (or dropped, with effects off).
    effects: int = 0


_KIND_TRIGGER = {EntryKind.COMPLETE: Trigger.COMPLETE.value, EntryKind.EXPIRE: Trigger.EXPIRE.value}


async def drain(ctx: DrainContext, conv: str) -> DrainReport:
    """Applies every waiting entry of one conversation, in order, while holding its lease;
    pending effects first, and each batch's effects before the next batch."""
    store = ctx.store
    lease = Lease(store, conv, secrets.token_hex(16), ctx.lease_seconds)
    report = DrainReport()
    effects = ctx.effects
    ids = _SessionIds()
    now_ms = ctx.now_ms()
    step = await store.drain_step(
        conv, lease.token, ctx.policy, acquire=True, now_ms=now_ms, id_base=ids.base
    )
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
                batch = drop_effects(step, ctx.clock())
            else:
                batch = await run_effects(lease, effects, step, ctx.clock)
                if batch is None:
                    break
        now_ms = ctx.now_ms()
        step = await store.drain_step(
            conv,
            lease.token,
            ctx.policy,
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
        if result.kind is EntryKind.OPERATOR_REPLY:
            # Queued ones are counted when their effects commit (sent, failed, ...).
            if result.detail != "queued":
                outcome = "dropped" if result.detail == "dropped" else "session_ended"
                labelled(metrics.OPERATOR_REPLIES, outcome).inc()
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
