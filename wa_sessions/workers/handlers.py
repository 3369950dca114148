"""What the workers do, as plain functions over explicit dependencies (actors only call these).

``drain_conversation`` is the per-phone actor's body: it takes the conversation's lease and
applies its inbox in order, each entry fenced by the lease token and acknowledged in the same
Lua step that commits it. Whatever runs it, however often and on whichever host, each entry is
applied once and in acceptance order. A drain that dies leaves its lease to lapse; the re-drive
pass (``redrive``) wakes the conversation again within a lease period.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from wa_sessions import metrics
from wa_sessions.errors import SessionNotFound
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.inbox import Inbox
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.service import SessionService, new_session_id
from wa_sessions.statemachine.store import EntryResult

log = logging.getLogger(__name__)


@dataclass
class WorkerDeps:
    service: SessionService
    inbox: Inbox
    #: Enqueues a drain wake-up for a conversation key (the actor's ``send``).
    wake: Callable[[str], None]
    lease_seconds: float = 5.0
    batch_size: int = 100

    @property
    def lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)


@dataclass
class DrainReport:
    applied: int = 0
    outcome: str = "drained"
    results: list[EntryResult] = field(default_factory=list)


_KIND_TRIGGER = {"c": Trigger.COMPLETE.value, "x": Trigger.EXPIRE.value}


def drain_conversation(deps: WorkerDeps, conv: str) -> DrainReport:
    """Applies every waiting entry of one conversation, in order, while holding its lease."""
    store = deps.service.store
    service = deps.service
    token = uuid.uuid4().hex
    report = DrainReport()
    entries = store.acquire(conv, token, lease_ms=deps.lease_ms, batch=deps.batch_size)
    if entries is None:
        # Another drain holds the lease; it re-checks the inbox before letting go.
        report.outcome = "busy"
        metrics.DRAINS.labels("busy").inc()
        return report
    while entries:
        now_ms = service.now_ms()
        results = store.apply_entries(
            conv,
            token,
            entries,
            now_ms=now_ms,
            new_session_ids=[new_session_id() for _ in entries],
            timeout_ms=service.timeout_ms,
            cap=service.max_messages_per_session,
            keep_ms=service.keep_ms,
            lease_ms=deps.lease_ms,
            carry=service.carry_over_context_keys,
        )
        released = False
        for entry, result in zip(entries, results, strict=True):
            if result.status in ("lease", "head"):
                report.outcome = "lease_lost"
                metrics.DRAINS.labels("lease_lost").inc()
                log.warning("drain lost its lease; another drain continues the inbox")
                return report
            report.results.append(result)
            _observe(entry, result, now_ms)
            if result.status == "ok":
                report.applied += 1
            released = result.released
        if released:
            break
        entries = store.release_or_next(conv, token, lease_ms=deps.lease_ms, batch=deps.batch_size)
        if entries is None:
            report.outcome = "lease_lost"
            metrics.DRAINS.labels("lease_lost").inc()
            return report
    metrics.DRAINS.labels("drained").inc()
    return report


def _observe(entry: str, result: EntryResult, now_ms: int) -> None:
    accepted_ms, kind, a, b, _ = entry.split("\t", 4)
    if result.status == "bad":
        log.error("dropped a malformed inbox entry")
        return
    if result.created:
        metrics.SESSIONS_STARTED.inc()
    if kind == "m":
        metrics.MESSAGES.labels(a, b).inc()
        metrics.QUEUE_LAG.observe(max(0, now_ms - int(accepted_ms)) / 1000)
        return
    # Session ends are counted from the store's ended-events list, whichever path ended them.
    trigger = _KIND_TRIGGER.get(kind, "unknown")
    outcome = result.detail
    if outcome in ("completed", "expired"):
        metrics.OPERATIONS.labels(trigger, "applied").inc()
    else:
        metrics.OPERATIONS.labels(
            trigger, "invalid" if outcome.startswith("invalid") else outcome
        ).inc()


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


def redrive(deps: WorkerDeps, *, limit: int = 1000) -> int:
    """Wakes every conversation whose inbox waits with no drain running or queued."""
    convs = deps.service.store.redrive(wake_ttl_ms=deps.inbox.policy.wake_ttl_ms, limit=limit)
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
