"""The drain handlers against a real Redis, called directly (no Dramatiq): order, exactly-once,
fencing, recovery of a dead drain, operator tasks through the inbox, timeouts and metrics.

The clock is a ``FakeClock``, so acceptance and application times are set by hand.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

import pytest
import redis
from prometheus_client import REGISTRY

from wa_sessions.errors import SessionNotFound
from wa_sessions.statemachine.entries import EntryKind
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import (
    Message,
    MessageDirection,
    MessageType,
    SessionStatus,
)
from wa_sessions.statemachine.redis.inbox import Inbox, InboxPolicy
from wa_sessions.statemachine.redis.store import RedisSessionStore
from wa_sessions.statemachine.service import SessionService, new_session_id
from wa_sessions.statemachine.steps import DrainStep, IngestOutcome, to_ms
from wa_sessions.workers import handlers
from wa_sessions.workers.handlers import DrainReport, WorkerDeps

BUSINESS = "+14155238886"


class FakeClock(Protocol):
    """The ``clock`` fixture of ``tests/conftest.py``."""

    def __call__(self) -> datetime: ...

    def advance(self, **delta: float) -> datetime: ...


def conv_of(n: int) -> str:
    return Conversation(f"+1415555{n:04d}", BUSINESS).key


@dataclass
class Harness:
    """One service, inbox and worker deps on the test Redis, with the wake-ups they sent."""

    service: SessionService
    inbox: Inbox
    deps: WorkerDeps
    clock: FakeClock
    woken: list[str] = field(default_factory=list)

    @property
    def store(self) -> RedisSessionStore:
        return self.service.store

    def message(
        self,
        content: str,
        *,
        direction: MessageDirection = MessageDirection.INBOUND,
        message_type: MessageType = MessageType.TEXT,
    ) -> Message:
        return Message(
            id="SM" + uuid.uuid4().hex,
            content=content,
            direction=direction,
            message_type=message_type,
            timestamp=self.clock(),
        )

    def accept(self, conv: str, message: Message) -> IngestOutcome:
        return self.inbox.accept(conv, message, accepted_ms=to_ms(self.clock()))

    def accept_all(self, conv: str, contents: list[str]) -> None:
        for content in contents:
            assert self.accept(conv, self.message(content)) > IngestOutcome.DUPLICATE

    def drain(self, conv: str) -> DrainReport:
        return handlers.drain_conversation(self.deps, conv)

    def history(self, conv: str) -> list[str]:
        """Every applied message's content, over all the conversation's sessions."""
        return [
            m.content
            for sid in self.store.conversation_session_ids(conv)
            for m in self.store.messages(sid)
        ]

    def step_as(
        self, conv: str, token: str, *, acquire: bool = False, batch: int = 100
    ) -> DrainStep:
        """One drain step as a drain holding (or, with ``acquire``, taking) ``token`` would
        take it, applying up to ``batch`` entries."""
        policy = replace(self.deps.policy(None), batch=batch)
        return self.store.drain_step(
            conv,
            token,
            policy,
            acquire=acquire,
            now_ms=self.service.now_ms(),
            id_base=new_session_id(),
        )

    def hold_lease(self, conv: str, token: str) -> None:
        """Another drain's lease, as if it were running."""
        self.store.client.set(self.store.keys.conv_lease(conv), token, px=5000)


HarnessFactory = Callable[..., Harness]


@pytest.fixture
def make_harness(redis_client: redis.Redis, clock: FakeClock) -> HarnessFactory:
    def make(*, lease_seconds: float = 5.0, batch_size: int = 100) -> Harness:
        service = SessionService(redis_client, clock=clock, session_timeout_hours=1.0)
        inbox = Inbox(service.store, InboxPolicy(lease_seconds=lease_seconds))
        woken: list[str] = []
        deps = WorkerDeps(
            service=service,
            inbox=inbox,
            wake=woken.append,
            lease_seconds=lease_seconds,
            batch_size=batch_size,
        )
        return Harness(service, inbox, deps, clock, woken)

    return make


@pytest.fixture
def h(make_harness: HarnessFactory) -> Harness:
    return make_harness()


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# ---- order and exactly-once --------------------------------------------------------------------


def test_drain_applies_entries_in_acceptance_order_exactly_once(h: Harness) -> None:
    """Ten accepted messages land in one session in acceptance order; a second drain adds none."""
    conv = conv_of(1)
    contents = [f"m{i}" for i in range(10)]
    h.accept_all(conv, contents)

    first = h.drain(conv)
    second = h.drain(conv)

    assert (first.outcome, first.applied) == ("drained", 10)
    assert (second.outcome, second.applied) == ("drained", 0)
    assert h.history(conv) == contents
    assert len(h.store.conversation_session_ids(conv)) == 1
    assert h.store.inbox_depth(conv) == 0
    assert h.store.pending_summary() == (0, None)
    keys = h.store.keys
    assert not h.store.client.exists(keys.conv_lease(conv), keys.conv_wake(conv))


def test_drain_in_small_batches_keeps_order(make_harness: HarnessFactory) -> None:
    """With a batch smaller than the inbox, the drain fetches batch after batch in order."""
    h = make_harness(batch_size=3)
    conv = conv_of(1)
    contents = [f"m{i}" for i in range(10)]
    h.accept_all(conv, contents)

    report = h.drain(conv)

    assert (report.outcome, report.applied) == ("drained", 10)
    assert h.history(conv) == contents


def test_duplicate_message_sid_is_stored_once(h: Harness) -> None:
    """A MessageSid accepted twice (Twilio retry) is refused the second time, before and after
    the drain, and applied once."""
    conv = conv_of(1)
    message = h.message("hello")

    assert h.accept(conv, message) is IngestOutcome.ACCEPTED_WAKE
    assert h.accept(conv, message) is IngestOutcome.DUPLICATE
    assert h.store.inbox_depth(conv) == 1
    assert h.drain(conv).applied == 1
    assert h.accept(conv, message) is IngestOutcome.DUPLICATE
    assert h.drain(conv).applied == 0

    assert h.history(conv) == ["hello"]


def test_only_the_first_acceptance_asks_for_a_wake_up(h: Harness) -> None:
    """While a wake-up is queued, further messages are accepted without asking for another."""
    conv = conv_of(1)

    outcomes = [h.accept(conv, h.message(f"m{i}")) for i in range(3)]
    h.drain(conv)
    after_drain = h.accept(conv, h.message("m3"))

    assert outcomes == [
        IngestOutcome.ACCEPTED_WAKE,
        IngestOutcome.ACCEPTED,
        IngestOutcome.ACCEPTED,
    ]
    assert after_drain is IngestOutcome.ACCEPTED_WAKE


def test_second_drain_while_the_lease_is_held_returns_busy_and_applies_nothing(
    h: Harness,
) -> None:
    """A drain that finds another drain's lease leaves the inbox untouched and says busy."""
    conv = conv_of(1)
    h.accept_all(conv, ["a", "b", "c"])
    h.hold_lease(conv, "other-drain")
    busy_before = sample("wa_sessions_drains_total", {"outcome": "busy"})

    report = h.drain(conv)

    assert (report.outcome, report.applied, report.results) == ("busy", 0, [])
    assert h.store.inbox_depth(conv) == 3
    assert h.history(conv) == []
    assert h.store.client.get(h.store.keys.conv_lease(conv)) == "other-drain"
    assert sample("wa_sessions_drains_total", {"outcome": "busy"}) == busy_before + 1


def test_concurrent_drains_and_ingest_apply_each_message_once_in_order(
    make_harness: HarnessFactory,
) -> None:
    """Eight threads draining five conversations while a ninth ingests: every message is
    applied exactly once, each conversation in acceptance order."""
    h = make_harness(batch_size=4)
    convs = [conv_of(n) for n in range(5)]
    per_conv = 60
    ingest_done = threading.Event()
    deadline = time.monotonic() + 20

    def ingest() -> None:
        for i in range(per_conv):
            for conv in convs:
                assert h.accept(conv, h.message(f"{conv}#{i}")) > IngestOutcome.DUPLICATE
        ingest_done.set()

    def drain_until_empty() -> list[DrainReport]:
        reports: list[DrainReport] = []
        while time.monotonic() < deadline:
            settled = ingest_done.is_set()
            for conv in convs:
                reports.append(h.drain(conv))
            if settled and all(h.store.inbox_depth(c) == 0 for c in convs):
                return reports
        raise AssertionError("inboxes not drained before the deadline")

    with ThreadPoolExecutor(max_workers=9) as pool:
        drainers = [pool.submit(drain_until_empty) for _ in range(8)]
        pool.submit(ingest).result()
        reports = [r for d in drainers for r in d.result()]

    assert sum(r.applied for r in reports) == per_conv * len(convs)
    assert {r.outcome for r in reports} <= {"drained", "busy"}
    for conv in convs:
        assert h.history(conv) == [f"{conv}#{i}" for i in range(per_conv)]
        assert len(h.store.conversation_session_ids(conv)) == 1


# ---- fencing and recovery ----------------------------------------------------------------------


def test_a_step_with_a_superseded_lease_token_applies_nothing(h: Harness) -> None:
    """Once another drain owns the lease, the old token's steps answer ``lease``: nothing is
    applied, popped or released."""
    conv = conv_of(1)
    h.accept_all(conv, ["a", "b", "c"])
    first = h.step_as(conv, "old-token", acquire=True, batch=1)
    assert [r.status for r in first.results] == ["ok"]
    h.store.client.set(h.store.keys.conv_lease(conv), "new-token")

    late = h.step_as(conv, "old-token")

    assert (late.status, late.results, late.released) == ("lease", [], False)
    assert h.store.inbox_depth(conv) == 2
    assert h.history(conv) == ["a"]
    assert h.store.client.get(h.store.keys.conv_lease(conv)) == "new-token"


def test_each_step_applies_the_inbox_head_once(h: Harness) -> None:
    """A step applies what is at the head of the inbox and pops it in the same Lua step, so
    steps in a row (batches of one) apply each entry once, in order; the step that empties
    the inbox gives the lease up."""
    conv = conv_of(1)
    h.accept_all(conv, ["a", "b"])

    steps = [h.step_as(conv, "token", acquire=True, batch=1), h.step_as(conv, "token", batch=1)]

    assert [[r.status for r in s.results] for s in steps] == [["ok"], ["ok"]]
    assert [s.released for s in steps] == [False, True]
    assert h.history(conv) == ["a", "b"]
    assert h.step_as(conv, "token").status == "lease"
    assert not h.store.client.exists(h.store.keys.conv_lease(conv))


def wait_until(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


def test_drain_killed_midway_is_rewoken_by_redrive_once_its_lease_lapses(
    make_harness: HarnessFactory,
) -> None:
    """A drain that dies holding the lease blocks nothing for longer than the lease: the
    re-drive pass wakes the conversation and the next drain applies the rest, once each."""
    h = make_harness(lease_seconds=0.2)
    conv = conv_of(1)
    contents = [f"m{i}" for i in range(5)]
    h.accept_all(conv, contents)
    dead = h.step_as(conv, "dead-drain", acquire=True, batch=1)
    assert [r.status for r in dead.results] == ["ok"]

    assert handlers.redrive(h.deps) == 0
    assert h.woken == []
    lease_key = h.store.keys.conv_lease(conv)
    wait_until(lambda: not h.store.client.exists(lease_key))
    assert handlers.redrive(h.deps) == 1
    assert h.woken == [conv]
    report = h.drain(conv)

    assert (report.outcome, report.applied) == ("drained", 4)
    assert h.history(conv) == contents


def test_redrive_wakes_only_conversations_with_neither_wake_flag_nor_lease(h: Harness) -> None:
    """A queued wake-up or a live lease means a drain is coming; only an orphaned inbox is
    re-driven, and only once until its wake flag lapses."""
    queued, leased, orphaned, empty = (conv_of(n) for n in range(4))
    for conv in (queued, leased, orphaned, empty):
        h.accept_all(conv, [f"{conv} first"])
    h.hold_lease(leased, "token")
    h.store.client.delete(h.store.keys.conv_wake(orphaned))
    assert h.drain(empty).applied == 1

    first = handlers.redrive(h.deps)
    second = handlers.redrive(h.deps)

    assert (first, second) == (1, 0)
    assert h.woken == [orphaned]


# ---- operator tasks and timeouts ---------------------------------------------------------------


def test_operator_complete_applies_after_the_messages_queued_before_it(h: Harness) -> None:
    """Messages accepted before the complete join the session; the one after opens a new one."""
    conv = conv_of(1)
    h.accept_all(conv, ["m0"])
    h.drain(conv)
    session_id = h.store.latest_session_id(conv)
    assert session_id is not None
    h.accept_all(conv, ["m1", "m2"])
    _, wake = h.inbox.request(
        conv, "complete", session_id, accepted_ms=h.service.now_ms(), reason="operator"
    )
    h.clock.advance(seconds=1)
    h.accept_all(conv, ["m3"])

    report = h.drain(conv)

    assert wake is False
    message, complete = EntryKind.MESSAGE, EntryKind.COMPLETE
    assert [(r.kind, r.status) for r in report.results] == [
        (message, "ok"),
        (message, "ok"),
        (complete, "ok"),
        (message, "ok"),
    ]
    assert report.results[2].target_session_id == session_id
    assert report.results[0].direction == "inbound"
    completed = h.store.load(session_id)
    assert completed is not None
    assert completed.status is SessionStatus.COMPLETED
    assert completed.end_reason == "operator"
    assert [m.content for m in completed.messages] == ["m0", "m1", "m2"]
    latest = h.service.get_session_by_phone(conv.split("|")[0])
    assert latest is not None
    assert latest.session_id != session_id
    assert [m.content for m in latest.messages] == ["m3"]


def test_request_transition_applies_at_once_when_no_drain_holds_the_lease(h: Harness) -> None:
    """The operator handler queues the expire and drains it itself."""
    conv = conv_of(1)
    h.accept_all(conv, ["m0"])
    h.drain(conv)
    session_id = h.store.latest_session_id(conv)
    assert session_id is not None

    handlers.request_transition(h.deps, "expire", session_id, "operator")

    assert h.store.status_of(session_id) == SessionStatus.EXPIRED
    assert h.store.inbox_depth(conv) == 0


def test_request_transition_for_an_unknown_session_raises_and_queues_nothing(h: Harness) -> None:
    """An unknown session id is a permanent error, and no inbox entry is left behind."""
    with pytest.raises(SessionNotFound):
        handlers.request_transition(h.deps, "complete", "no-such-session", "operator")

    assert h.store.pending_summary() == (0, None)


def test_message_accepted_in_time_but_applied_late_continues_the_session(h: Harness) -> None:
    """Acceptance time decides: a message accepted 59 minutes into a one-hour timeout joins the
    session even when applied two hours later; one accepted after the timeout opens a new one."""
    conv = conv_of(1)
    h.accept_all(conv, ["m0"])
    h.drain(conv)
    session_id = h.store.latest_session_id(conv)
    assert session_id is not None
    h.clock.advance(minutes=59)
    h.accept_all(conv, ["in time"])
    h.clock.advance(hours=2)

    late = h.drain(conv)
    h.accept_all(conv, ["after timeout"])
    fresh = h.drain(conv)

    assert [(r.session_id, r.created) for r in late.results] == [(session_id, False)]
    assert fresh.results[0].created is True
    assert fresh.results[0].session_id != session_id
    assert fresh.results[0].detail == session_id
    old = h.store.load(session_id)
    assert old is not None
    assert [m.content for m in old.messages] == ["m0", "in time"]
    assert old.status is SessionStatus.EXPIRED
    assert old.end_reason == "timeout"


def test_expire_idle_sessions_skips_a_session_whose_inbox_still_waits(h: Harness) -> None:
    """The sweep leaves a session alone while an in-time message waits; once applied, the
    message has renewed it and a later sweep expires it."""
    waiting, idle = conv_of(1), conv_of(2)
    for conv in (waiting, idle):
        h.accept_all(conv, [f"{conv} m0"])
        h.drain(conv)
    h.clock.advance(minutes=30)
    h.accept_all(waiting, ["in time"])
    h.clock.advance(minutes=60)

    expired = handlers.expire_idle_sessions(h.deps)

    waiting_sid = h.store.latest_session_id(waiting)
    idle_sid = h.store.latest_session_id(idle)
    assert waiting_sid is not None
    assert idle_sid is not None
    assert expired == 1
    assert h.store.status_of(idle_sid) == SessionStatus.EXPIRED
    assert h.store.status_of(waiting_sid) == SessionStatus.ACTIVE
    assert h.drain(waiting).results[0].session_id == waiting_sid
    h.clock.advance(minutes=31)
    assert handlers.expire_idle_sessions(h.deps) == 1
    assert h.store.status_of(waiting_sid) == SessionStatus.EXPIRED


@pytest.mark.parametrize("read", ["by_id", "by_phone"])
def test_reading_a_session_after_the_timeout_does_not_strand_an_in_time_message(
    h: Harness, read: str
) -> None:
    """A session read (lazy expiry) while an in-time message waits must not decide the
    message's session: acceptance time still does."""
    conv = conv_of(1)
    h.accept_all(conv, ["m0"])
    h.drain(conv)
    session_id = h.store.latest_session_id(conv)
    assert session_id is not None
    h.clock.advance(minutes=30)
    h.accept_all(conv, ["in time"])
    h.clock.advance(minutes=60)

    if read == "by_id":
        h.service.get_session_by_id(session_id)
    else:
        h.service.get_session_by_phone(conv.split("|")[0])
    report = h.drain(conv)

    assert [(r.session_id, r.created) for r in report.results] == [(session_id, False)]


# ---- metrics -----------------------------------------------------------------------------------


def test_drain_counts_messages_lag_and_started_sessions(h: Harness) -> None:
    """Applied messages count by direction and type, each observes its queue lag (here two
    seconds on the fake clock), and one session start is counted."""
    conv = conv_of(1)
    inbound = {"direction": "inbound", "type": "text"}
    outbound = {"direction": "outbound", "type": "image"}
    before = {
        "in": sample("wa_sessions_messages_total", inbound),
        "out": sample("wa_sessions_messages_total", outbound),
        "lag_count": sample("wa_sessions_queue_lag_seconds_count"),
        "lag_sum": sample("wa_sessions_queue_lag_seconds_sum"),
        "started": sample("wa_sessions_sessions_started_total"),
    }
    h.accept_all(conv, ["a", "b", "c"])
    reply = h.message("photo", direction=MessageDirection.OUTBOUND, message_type=MessageType.IMAGE)
    assert h.accept(conv, reply) is IngestOutcome.ACCEPTED
    h.clock.advance(seconds=2)

    h.drain(conv)

    assert sample("wa_sessions_messages_total", inbound) == before["in"] + 3
    assert sample("wa_sessions_messages_total", outbound) == before["out"] + 1
    assert sample("wa_sessions_queue_lag_seconds_count") == before["lag_count"] + 4
    assert sample("wa_sessions_queue_lag_seconds_sum") == pytest.approx(before["lag_sum"] + 8.0)
    assert sample("wa_sessions_sessions_started_total") == before["started"] + 1


def test_operator_complete_of_a_session_idle_past_timeout_expires_it_instead(h: Harness) -> None:
    """An operator's complete, queued after the timeout had passed, finds the session already
    expired (by its idleness), as a direct complete_session call would."""
    conv = conv_of(1)
    h.accept_all(conv, ["m0"])
    h.drain(conv)
    session_id = h.store.latest_session_id(conv)
    assert session_id is not None
    h.clock.advance(minutes=61)

    h.inbox.request(conv, "complete", session_id, accepted_ms=h.service.now_ms(), reason="op")
    report = h.drain(conv)

    assert [(r.kind, r.detail) for r in report.results] == [(EntryKind.COMPLETE, "invalid:expired")]
    ended = h.store.load(session_id, include_messages=False)
    assert ended is not None
    assert ended.status is SessionStatus.EXPIRED
    assert ended.end_reason == "timeout"


def test_sweep_reaches_idle_sessions_behind_a_full_batch_of_waiting_ones(h: Harness) -> None:
    """Idle sessions whose inboxes wait are skipped without hiding the idle ones after them."""
    waiting = [conv_of(n) for n in range(3)]
    idle = conv_of(9)
    for conv in waiting:
        h.accept_all(conv, [f"{conv} m0"])
        h.drain(conv)
    h.clock.advance(seconds=1)
    h.accept_all(idle, ["idle m0"])
    h.drain(idle)
    h.clock.advance(minutes=30)
    for conv in waiting:
        h.accept_all(conv, ["in time"])
    h.clock.advance(minutes=60)

    expired = h.service.cleanup_expired_sessions(batch=2)

    idle_sid = h.store.latest_session_id(idle)
    assert idle_sid is not None
    assert expired == 1
    assert h.store.status_of(idle_sid) == SessionStatus.EXPIRED
    for conv in waiting:
        sid = h.store.latest_session_id(conv)
        assert sid is not None
        assert h.store.status_of(sid) == SessionStatus.ACTIVE


def test_a_batch_survives_redis_losing_its_script_cache(h: Harness) -> None:
    """After SCRIPT FLUSH (as after a Redis restart) a pipelined batch reloads its script and
    applies every entry exactly once."""
    conv = conv_of(1)
    h.accept_all(conv, ["a", "b", "c"])
    h.store.client.script_flush()

    report = h.drain(conv)

    assert report.applied == 3
    assert h.history(conv) == ["a", "b", "c"]


def test_sessions_opened_in_one_drain_get_distinct_uuids(h: Harness) -> None:
    """One drain opening several sessions (operator completes between the messages) gives
    each its own well-formed id; so does the next drain."""
    conv = conv_of(1)
    for n in range(3):
        h.accept_all(conv, [f"s{n}"])
        h.inbox.request(conv, "complete", "", accepted_ms=h.service.now_ms(), reason="op")
        h.clock.advance(seconds=1)
    h.drain(conv)
    h.accept_all(conv, ["next"])
    h.drain(conv)

    ids = h.store.conversation_session_ids(conv)
    assert len(ids) == len(set(ids)) == 4
    assert all(str(uuid.UUID(sid)) == sid and uuid.UUID(sid).version == 4 for sid in ids)
    assert h.history(conv) == ["s0", "s1", "s2", "next"]
