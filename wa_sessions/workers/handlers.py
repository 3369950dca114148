"""What the workers do, as plain functions over explicit dependencies (actors only call these).

``drain_conversation`` is the per-phone actor's body: it takes the conversation's lease and
applies its inbox in order, each entry fenced by the lease token and acknowledged in the same
Lua step that commits it. Whatever runs it, however often and on whichever host, each entry is
applied once and in acceptance order. A drain that dies leaves its lease to lapse; the re-drive
pass (``redrive``) wakes the conversation again within a lease period.

With effects configured (an order extractor and a reply sender), applying an inbound text or
image message also queues its effects, and the drain runs them (``effects.run_effects``) before
it applies the next entry: a conversation's replies follow its messages in order, and a drain
that finds effects left by a dead one finishes those first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from wa_sessions import metrics
from wa_sessions.errors import SessionNotFound
from wa_sessions.orders.extractor import OrderExtractor
from wa_sessions.replies.sender import OutboundSender
from wa_sessions.replies.templates import ReplyTemplates
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.inbox import Inbox
from wa_sessions.statemachine.lifecycle import Trigger
from wa_sessions.statemachine.models import MessageDirection, MessageType
from wa_sessions.statemachine.service import SessionService, new_session_id
from wa_sessions.statemachine.store import EntryResult, Work
from wa_sessions.workers.effects import Effects, run_effects

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

    @property
    def lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)

    @property
    def effects(self) -> Effects | None:
        if self.extractor is None or self.sender is None:
            return None
        return Effects(self.extractor, self.sender, self.reply_templates)


@dataclass
class DrainReport:
    applied: int = 0
    outcome: str = "drained"
    results: list[EntryResult] = field(default_factory=list)
    #: Messages whose effects this drain committed (or dropped, with effects off).
    effects: int = 0


_KIND_TRIGGER = {"c": Trigger.COMPLETE.value, "x": Trigger.EXPIRE.value}


def drain_conversation(deps: WorkerDeps, conv: str) -> DrainReport:
    """Applies every waiting entry of one conversation, in order, while holding its lease;
    pending effects first, and each message's effects right after the message."""
    store = deps.service.store
    token = uuid.uuid4().hex
    report = DrainReport()
    effects = deps.effects
    work: Work | None = store.acquire_work(
        conv, token, lease_ms=deps.lease_ms, batch=deps.batch_size
    )
    if work is None:
        # Another drain holds the lease; it re-checks the inbox before letting go.
        report.outcome = "busy"
        metrics.DRAINS.labels("busy").inc()
        return report
    while work.effect or work.entries:
        if work.effect and not _finish_effects(deps, effects, conv, token, work.effect, report):
            return _lease_lost(report)
        if work.entries:
            applied = _apply(deps, effects, conv, token, work.entries, report)
            if applied is None:
                return _lease_lost(report)
            if applied:
                break  # the last apply found nothing more to do and released the lease
        work = store.next_work(conv, token, lease_ms=deps.lease_ms, batch=deps.batch_size)
        if work is None:
            return _lease_lost(report)
    metrics.DRAINS.labels("drained").inc()
    return report


def _apply(
    deps: WorkerDeps,
    effects: Effects | None,
    conv: str,
    token: str,
    entries: list[str],
    report: DrainReport,
) -> bool | None:
    """Applies a batch in order, pipelined up to each message that has effects, which run
    before the entries after it. True when the lease was released, None when it was lost."""
    service = deps.service
    start = 0
    while start < len(entries):
        end = len(entries)
        if effects is not None:
            end = next((i + 1 for i in range(start, end) if _has_effects(entries[i])), end)
        chunk = entries[start:end]
        now_ms = service.now_ms()
        results = service.store.apply_entries(
            conv,
            token,
            chunk,
            now_ms=now_ms,
            new_session_ids=[new_session_id() for _ in chunk],
            timeout_ms=service.timeout_ms,
            cap=service.max_messages_per_session,
            keep_ms=service.keep_ms,
            lease_ms=deps.lease_ms,
            carry=service.carry_over_context_keys,
            release_when_empty=end == len(entries),
            effects=effects is not None,
        )
        for entry, result in zip(chunk, results, strict=True):
            if result.status in ("lease", "head"):
                return None
            report.results.append(result)
            _observe(entry, result, now_ms)
            if result.status == "ok":
                report.applied += 1
        last = results[-1]
        if last.effect and not _finish_effects(deps, effects, conv, token, last.effect, report):
            return None
        if last.released:
            return True
        start = end
    return False


def _has_effects(entry: str) -> bool:
    """Whether applying this inbox entry queues effects (an inbound text or image message)."""
    parts = entry.split("\t", 4)
    return (
        len(parts) == 5
        and parts[1] == "m"
        and parts[2] == MessageDirection.INBOUND.value
        and parts[3] in (MessageType.TEXT.value, MessageType.IMAGE.value)
    )


def _finish_effects(
    deps: WorkerDeps,
    effects: Effects | None,
    conv: str,
    token: str,
    record: str,
    report: DrainReport,
) -> bool:
    """Runs and commits effects from ``record`` until the effects list is empty. A drain
    without effects configured drops leftover records (they would block the conversation).
    False when the lease was lost."""
    service = deps.service
    while record:
        if effects is None:
            log.warning("dropped pending effects: this worker has no extractor or sender")
            result = service.store.commit_effects(
                conv,
                token,
                record,
                session_id="",
                order=None,
                messages=[],
                now=service.clock(),
                cap=service.max_messages_per_session,
                keep_ms=service.keep_ms,
                lease_ms=deps.lease_ms,
            )
        else:
            result = run_effects(
                service, effects, conv, token, record, lease_seconds=deps.lease_seconds
            )
        if result.status in ("lease", "head"):
            return False
        report.effects += 1
        record = result.next_effect
    return True


def _lease_lost(report: DrainReport) -> DrainReport:
    report.outcome = "lease_lost"
    metrics.DRAINS.labels("lease_lost").inc()
    log.warning("drain lost its lease; another drain continues the inbox")
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
