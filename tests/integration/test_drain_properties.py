"""The production path (ingest, then ``workers.drain.drain`` with its effects) driven by
hypothesis on a few phones, against the in-memory store, against Redis, and against both side by
side.

Rules: messages accepted (inbound text with or without an order in it, a location, an outbound
message), a MessageSid sent again, operator completes and expires through the inbox, sessions
ended at once through the API, full drains, drains that die between their effects and the
commit (some about to wrap their session counter), stalled drains whose commit comes late,
leases that lapse, clock moves past the session timeout and WhatsApp's 24-hour window.

After every step, on each store: every accepted message is applied once, in acceptance order
across the phone's sessions; a phone has at most one active session; an ended session never
changes; every applied inbound text message whose effects are committed is covered by exactly
one stored reply or failure note (those still pending by none; a session the API ended may leave
its last records unanswered); each session's order is the sum of its answered messages' orders
(merged once). Side by side, the two stores must also agree on every drain step's answer
(applied entries, records, the sessions' tails), every ingest outcome and the state they hold,
session ids aside.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import FakeClock
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.replies.sender import SendFailure, SendResult
from wa_sessions.statemachine.entries import EntryKind, message_entry, operation_entry
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.memory import InMemoryStore
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType, Session
from wa_sessions.statemachine.ports import DrainStore, IngestStore
from wa_sessions.statemachine.redis.async_store import AsyncDrainStore
from wa_sessions.statemachine.redis.store import RedisSessionStore
from wa_sessions.statemachine.steps import (
    DrainPolicy,
    DrainStep,
    EffectsCommit,
    IngestOutcome,
    SessionNow,
    to_ms,
)
from wa_sessions.workers.drain import DrainContext, DrainReport, drain
from wa_sessions.workers.effects import Effects, EffectsBatch, run_effects
from wa_sessions.workers.lease import Lease

BUSINESS = "+14155238886"
CONVS = [Conversation(f"+1415555{n:04d}", BUSINESS).key for n in range(2)]
TIMEOUT_MS = 3_600_000
#: Long enough that Redis' own clock never lapses a lease or a wake flag during a test run:
#: leases lapse only when the ``lapse_leases`` rule says so, in both stores alike.
LEASE_MS = 600_000
DEDUPE_TTL_MS = 7 * 86_400_000
KEEP_MS = 30 * 86_400_000
_ORDER = re.compile(r"(\d+) x (\w+)")
_REPLY_EVENTS = (None, "reply_skipped", "reply_failed")


# ---- fakes ----------------------------------------------------------------------------------


@dataclass
class FakeExtractor:
    """Reads ``<n> x <item>`` as an added item; records each call and the history it saw."""

    name: str = "fake"
    budget_seconds: float = 0.0
    history_limit: int = 3
    calls: list[tuple[str, list[str], dict[str, Any]]] = field(default_factory=list)

    async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
        history = [m.content for m in request.history]
        self.calls.append((request.message.content, history, request.order.model_dump()))
        match = _ORDER.search(request.message.content)
        if match is None:
            return ExtractionResult.nothing()
        change = ItemChange(action=ItemAction.ADD, name=match[2], quantity=int(match[1]))
        return ExtractionResult(found=True, changes=[change])


@dataclass
class FakeSender:
    """Answers with numbered Twilio-like SIDs (the same sequence for every store)."""

    name: str = "twilio"
    budget_seconds: float = 0.0
    sent: list[str] = field(default_factory=list)

    async def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        self.sent.append(body)
        return SendResult(sid=f"SM{len(self.sent):032d}", status="queued", sent=True)


class RecordingStore:
    """A ``DrainStore`` that forwards to another and keeps every step's answer."""

    def __init__(self, inner: DrainStore) -> None:
        self.inner = inner
        self.steps: list[DrainStep] = []

    async def drain_step(
        self,
        conv: str,
        token: str,
        policy: DrainPolicy,
        *,
        acquire: bool,
        now_ms: int,
        id_base: str,
        commit: EffectsCommit | None = None,
    ) -> DrainStep:
        step = await self.inner.drain_step(
            conv, token, policy, acquire=acquire, now_ms=now_ms, id_base=id_base, commit=commit
        )
        self.steps.append(step)
        return step

    async def extend_lease(self, conv: str, token: str, *, lease_ms: int) -> bool:
        return await self.inner.extend_lease(conv, token, lease_ms=lease_ms)

    async def read_now(self, conv: str, session_id: str) -> SessionNow:
        return await self.inner.read_now(conv, session_id)

    async def extend_lease_and_read(
        self, conv: str, token: str, session_id: str, *, lease_ms: int
    ) -> tuple[bool, SessionNow]:
        return await self.inner.extend_lease_and_read(conv, token, session_id, lease_ms=lease_ms)

    async def close(self) -> None:
        await self.inner.close()


# ---- the stores under test ------------------------------------------------------------------


class Backend(Protocol):
    """One store as the machine drives and reads it."""

    name: str
    ingest: IngestStore

    def drain_store(self) -> DrainStore:
        """Built on the machine's event loop, on first use."""
        ...

    def load(self, session_id: str) -> Session | None: ...

    def session_ids(self, conv: str) -> list[str]: ...

    def inbox_depth(self, conv: str) -> int: ...

    def pending_effects(self, conv: str) -> list[str]: ...

    def leased(self, conv: str) -> bool: ...

    def end_session(self, session_id: str, trigger: str, now_ms: int) -> tuple[str, str]:
        """The session API's end (reason ``api``)."""
        ...

    def lapse_leases(self) -> None:
        """Every lease and wake flag lapses (as after a dead drain's lease period)."""
        ...

    def close(self) -> None: ...


class MemoryBackend:
    name = "memory"

    def __init__(self, start_ms: int) -> None:
        self.lease_clock_ms = start_ms
        self.store = InMemoryStore(clock=lambda: self.lease_clock_ms)
        self.ingest: IngestStore = self.store

    def drain_store(self) -> DrainStore:
        return self.store

    def load(self, session_id: str) -> Session | None:
        return self.store.load(session_id)

    def session_ids(self, conv: str) -> list[str]:
        return self.store.conversation_session_ids(conv)

    def inbox_depth(self, conv: str) -> int:
        return self.store.inbox_depth(conv)

    def pending_effects(self, conv: str) -> list[str]:
        return self.store.pending_effects(conv)

    def leased(self, conv: str) -> bool:
        return self.store.lease_holder(conv) is not None

    def end_session(self, session_id: str, trigger: str, now_ms: int) -> tuple[str, str]:
        return self.store.end_session(session_id, trigger, now_ms=now_ms, reason="api")

    def lapse_leases(self) -> None:
        self.lease_clock_ms += 2 * LEASE_MS

    def close(self) -> None:
        return None


class RedisBackend:
    name = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        client = redis.Redis.from_url(url, decode_responses=True)
        client.flushall()
        self.store = RedisSessionStore(client)
        self.ingest: IngestStore = self.store
        self._async: AsyncDrainStore | None = None

    def drain_store(self) -> DrainStore:
        if self._async is None:
            client = redis.asyncio.Redis.from_url(self.url, decode_responses=True)
            self._async = AsyncDrainStore(client, self.store.keys)
        return self._async

    def load(self, session_id: str) -> Session | None:
        return self.store.load(session_id)

    def session_ids(self, conv: str) -> list[str]:
        return self.store.conversation_session_ids(conv)

    def inbox_depth(self, conv: str) -> int:
        return self.store.inbox_depth(conv)

    def pending_effects(self, conv: str) -> list[str]:
        return self.store.pending_effects(conv)

    def leased(self, conv: str) -> bool:
        return bool(self.store.client.exists(self.store.keys.conv_lease(conv)))

    def end_session(self, session_id: str, trigger: str, now_ms: int) -> tuple[str, str]:
        return self.store.end_session(
            session_id, trigger, now_ms=now_ms, keep_ms=KEEP_MS, reason="api"
        )

    def lapse_leases(self) -> None:
        keys = self.store.keys
        for conv in CONVS:
            self.store.client.delete(keys.conv_lease(conv), keys.conv_wake(conv))

    def close(self) -> None:
        self.store.client.close()


@dataclass
class Lane:
    """One store with its own fakes, and what the machine has seen of it."""

    backend: Backend
    extractor: FakeExtractor = field(default_factory=FakeExtractor)
    sender: FakeSender = field(default_factory=FakeSender)
    recorder: RecordingStore | None = None
    #: Ended sessions as first seen ended.
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Session id -> a name in order of first sight (ids are random; the stores' names agree).
    names: dict[str, str] = field(default_factory=dict)
    #: Per phone, the token and uncommitted batch of the drain that died last.
    dead: dict[str, tuple[str, EffectsBatch]] = field(default_factory=dict)

    def newest_session(self, conv: str) -> str | None:
        """The phone's newest session by first sight: the sessions zset breaks a tie in
        created time by the (random) id, which would pick differently in each store."""
        ids = sorted(self.backend.session_ids(conv), key=lambda sid: int(self.name(sid)[1:]))
        return ids[-1] if ids else None

    def name(self, session_id: str) -> str:
        if not session_id:
            return ""
        return self.names.setdefault(session_id, f"S{len(self.names) + 1}")


@dataclass(frozen=True)
class Accepted:
    conv: str
    message: Message
    entry: str


class DrainMachine(RuleBasedStateMachine):
    """Accept, drain, crash, lapse and move the clock on every lane alike; check each lane's
    invariants, and with two lanes, that they agree."""

    def __init__(self, factories: list[Callable[[int], Backend]], cap: int) -> None:
        super().__init__()
        self.clock = FakeClock()
        start = to_ms(self.clock())
        self.lanes = [Lane(factory(start)) for factory in factories]
        self.cap = cap
        self.loop = asyncio.Runner()
        self.accepted: list[Accepted] = []
        self.counter = 0

    def teardown(self) -> None:
        for lane in self.lanes:
            if lane.recorder is not None:
                self.loop.run(lane.recorder.close())
            lane.backend.close()
        self.loop.close()

    # ---- helpers ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return to_ms(self.clock())

    def policy(self, lane: Lane) -> DrainPolicy:
        return DrainPolicy(
            lease_ms=LEASE_MS,
            batch=4,
            timeout_ms=TIMEOUT_MS,
            cap=self.cap,
            keep_ms=KEEP_MS,
            effects=True,
            history=lane.extractor.history_limit,
        )

    def context(self, lane: Lane) -> DrainContext:
        if lane.recorder is None:
            lane.recorder = RecordingStore(lane.backend.drain_store())
        return DrainContext(
            store=lane.recorder,
            policy=self.policy(lane),
            effects=Effects(lane.extractor, lane.sender),
            lease_seconds=LEASE_MS / 1000,
            clock=self.clock,
        )

    def agree(self, what: str, answers: list[Any]) -> None:
        for lane, answer in zip(self.lanes[1:], answers[1:], strict=True):
            assert answer == answers[0], (
                f"{what}: {self.lanes[0].backend.name} and {lane.backend.name} disagree:\n"
                f"{answers[0]!r}\n{answer!r}"
            )

    def steps_since(self, lane: Lane, mark: int) -> list[Any]:
        assert lane.recorder is not None
        return [self.normal_step(lane, step) for step in lane.recorder.steps[mark:]]

    def normal_step(self, lane: Lane, step: DrainStep) -> Any:
        def record(raw: str) -> str:
            sid, _, payload = raw.partition("\t")
            return f"{lane.name(sid)}\t{payload}"

        return (
            step.status,
            step.released,
            step.committed,
            [
                (
                    r.status,
                    r.kind,
                    r.direction if r.kind == EntryKind.MESSAGE else lane.name(r.target_session_id),
                    r.message_type if r.kind == EntryKind.MESSAGE else r.operation_id,
                    r.accepted_ms,
                    lane.name(r.session_id),
                    r.created,
                    lane.name(r.detail) if r.kind == EntryKind.MESSAGE else r.detail,
                )
                for r in step.results
            ],
            [record(r) for r in step.effects],
            {
                lane.name(sid): (
                    s.status,
                    s.order_json,
                    s.last_inbound_ms,
                    s.phone,
                    s.business,
                    [_without_random_ids(item) for item in s.tail],
                )
                for sid, s in step.sessions.items()
            },
        )

    # ---- rules ------------------------------------------------------------------------------

    @rule(
        conv=st.sampled_from(CONVS),
        kind=st.sampled_from(["order", "order", "chat", "location", "outbound"]),
        item=st.sampled_from(["apple", "pear"]),
        quantity=st.integers(1, 3),
    )
    def accept(self, conv: str, kind: str, item: str, quantity: int) -> None:
        """A message accepted by the webhook: one ingest per store, the same outcome."""
        self.counter += 1
        content = {
            "order": f"{quantity} x {item}",
            "chat": "thanks",
            "location": "52.1,4.3",
            "outbound": "we are open",
        }[kind]
        message = Message(
            id=f"SMin{self.counter:030x}",
            content=content,
            message_type=MessageType.LOCATION if kind == "location" else MessageType.TEXT,
            direction=MessageDirection.OUTBOUND if kind == "outbound" else MessageDirection.INBOUND,
            timestamp=self.clock(),
        )
        entry = message_entry(message, self.now_ms())
        outcomes = [self._ingest(lane, conv, entry, message.id) for lane in self.lanes]
        self.agree("ingest", outcomes)
        assert outcomes[0] in (IngestOutcome.ACCEPTED, IngestOutcome.ACCEPTED_WAKE)
        self.accepted.append(Accepted(conv, message, entry))

    def _ingest(self, lane: Lane, conv: str, entry: str, sid: str) -> IngestOutcome:
        return lane.backend.ingest.ingest(
            conv,
            entry,
            message_sid=sid,
            accepted_ms=self.now_ms(),
            dedupe_ttl_ms=DEDUPE_TTL_MS,
            max_depth=1000,
            wake_ttl_ms=LEASE_MS,
        )

    @precondition(lambda self: bool(self.accepted))
    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        """Twilio retries a webhook: the MessageSid is refused as a duplicate everywhere."""
        self.resend_message(data.draw(st.sampled_from(self.accepted)))

    def resend_message(self, again: Accepted) -> None:
        for lane in self.lanes:
            outcome = self._ingest(lane, again.conv, again.entry, again.message.id)
            assert outcome == IngestOutcome.DUPLICATE

    @rule(
        conv=st.sampled_from(CONVS),
        trigger=st.sampled_from(["complete", "expire"]),
        whose=st.sampled_from(["active", "newest", "other phone's"]),
    )
    def operate(self, conv: str, trigger: str, whose: str) -> None:
        """An operator's complete or expire of the active session, of the phone's newest
        session by id, or (a mistake) of another phone's, queued behind the phone's waiting
        messages."""
        self.counter += 1
        other = CONVS[(CONVS.index(conv) + 1) % len(CONVS)]
        wakes = []
        for lane in self.lanes:
            named = {"active": None, "newest": conv, "other phone's": other}[whose]
            session_id = (lane.newest_session(named) or "") if named else ""
            entry = operation_entry(
                trigger, session_id, f"op{self.counter}", self.now_ms(), "operator"
            )
            wakes.append(
                lane.backend.ingest.push_operation(
                    conv, entry, accepted_ms=self.now_ms(), wake_ttl_ms=LEASE_MS
                )
            )
        self.agree("push_operation", wakes)

    @rule(
        conv=st.sampled_from(CONVS),
        entry=st.sampled_from(["garbage", "1\tm\tinbound", "unknown kind"]),
    )
    def accept_odd_entry(self, conv: str, entry: str) -> None:
        """An inbox entry the drain cannot parse, or one of a kind nobody writes: dropped as
        ``bad`` by both stores (a batch with records stops before it)."""
        self.counter += 1
        if entry == "unknown kind":
            entry = f"{self.now_ms()}\tz\t\top{self.counter}\tunknown"
        outcomes = [self._ingest(lane, conv, entry, f"SModd{self.counter}") for lane in self.lanes]
        self.agree("ingest", outcomes)

    @rule(conv=st.sampled_from(CONVS))
    def drain(self, conv: str) -> None:
        """A full drain of one phone (``busy`` while a dead drain's lease holds it)."""
        answers = []
        for lane in self.lanes:
            ctx = self.context(lane)
            assert lane.recorder is not None
            mark = len(lane.recorder.steps)
            report: DrainReport = self.loop.run(drain(ctx, conv))
            assert report.outcome in ("drained", "busy")
            answers.append((report.outcome, report.applied, self.steps_since(lane, mark)))
        self.agree("drain", answers)

    @rule(conv=st.sampled_from(CONVS), counter=st.sampled_from([0, 0xFFFE, 0xFFFF]))
    def crash(self, conv: str, counter: int) -> None:
        """A drain that takes the lease, applies a batch, runs its effects (the replies leave)
        and dies before its commit (or stalls: see ``late_commit``). Its session counter may
        be about to wrap."""
        answers = []
        for lane in self.lanes:
            ctx = self.context(lane)
            assert lane.recorder is not None
            assert ctx.effects is not None
            mark = len(lane.recorder.steps)
            token = f"dead{self.counter}"
            step = self.loop.run(
                lane.recorder.drain_step(
                    conv,
                    token,
                    ctx.policy,
                    acquire=True,
                    now_ms=self.now_ms(),
                    id_base=f"{self.counter:08x}-dead-0000-0000-00000000{counter:04x}",
                )
            )
            if step.status == "ok" and step.effects:
                lease = Lease(lane.recorder, conv, token, ctx.lease_seconds)
                batch = self.loop.run(run_effects(lease, ctx.effects, step, self.clock))
                assert batch is not None
                lane.dead[conv] = (token, batch)
            answers.append(self.steps_since(lane, mark))
        self.counter += 1
        self.agree("crash", answers)

    @precondition(lambda self: any(lane.dead for lane in self.lanes))
    @rule(conv=st.sampled_from(CONVS))
    def late_commit(self, conv: str) -> None:
        """The drain that died last on this phone was only stalled: it sends its commit. Only
        a lease it still holds lets it through (then it stalls again, holding the lease)."""
        answers: list[Any] = []
        for lane in self.lanes:
            if conv not in lane.dead:
                answers.append(None)
                continue
            ctx = self.context(lane)
            assert lane.recorder is not None
            token, batch = lane.dead.pop(conv)
            held = lane.backend.leased(conv)
            step = self.loop.run(
                lane.recorder.drain_step(
                    conv,
                    token,
                    ctx.policy,
                    acquire=False,
                    now_ms=self.now_ms(),
                    id_base=f"{self.counter:08x}-late-0000-0000-000000000000",
                    commit=batch.commit,
                )
            )
            assert step.status in ("ok", "lease")
            assert held or step.status == "lease"
            answers.append(self.normal_step(lane, step))
        self.counter += 1
        self.agree("late commit", answers)

    @rule(conv=st.sampled_from(CONVS), trigger=st.sampled_from(["complete", "expire"]))
    def api_end(self, conv: str, trigger: str) -> None:
        """The session API ends the phone's newest session at once (not through the inbox),
        possibly between a batch's apply and its commit."""
        answers = []
        for lane in self.lanes:
            target = lane.newest_session(conv)
            answers.append(
                lane.backend.end_session(target, trigger, self.now_ms()) if target else None
            )
        self.agree("api end", answers)

    @rule()
    def lapse_leases(self) -> None:
        """Dead drains' leases (and stale wake flags) lapse."""
        for lane in self.lanes:
            lane.backend.lapse_leases()

    @rule(minutes=st.sampled_from([1, 59, 60, 61, 24 * 60 + 1]))
    def advance_clock(self, minutes: int) -> None:
        """Time moves on: within, to and past the session timeout, or past WhatsApp's window."""
        self.clock.advance(minutes=minutes)

    # ---- invariants -------------------------------------------------------------------------

    def check_all(self) -> None:
        """Every invariant, for scripted runs."""
        self.applied_once_in_order()
        self.one_active_session_per_phone()
        self.ended_sessions_never_change()
        self.each_committed_message_answered_once_and_merged_once()
        self.the_stores_agree()

    def sessions(self, lane: Lane, conv: str) -> list[Session]:
        found = [lane.backend.load(sid) for sid in lane.backend.session_ids(conv)]
        return [s for s in found if s is not None]

    @invariant()
    def applied_once_in_order(self) -> None:
        """The accepted messages found in a phone's sessions, taken session by session, are
        the phone's accepted messages in acceptance order, each once, up to those waiting."""
        for lane in self.lanes:
            for conv in CONVS:
                order = [a.message.id for a in self.accepted if a.conv == conv]
                position = {mid: i for i, mid in enumerate(order)}
                sessions = self.sessions(lane, conv)
                if any(s.trimmed_count for s in sessions):
                    continue
                runs = [
                    [m.id for m in s.messages if m.id in position]
                    for s in sessions
                    if any(m.id in position for m in s.messages)
                ]
                runs.sort(key=lambda run: position[run[0]])
                applied = [mid for run in runs for mid in run]
                assert applied == order[: len(applied)], (lane.backend.name, conv)
                assert lane.backend.inbox_depth(conv) >= len(order) - len(applied)

    @invariant()
    def one_active_session_per_phone(self) -> None:
        for lane in self.lanes:
            for conv in CONVS:
                active = [s for s in self.sessions(lane, conv) if s.status.value == "active"]
                assert len(active) <= 1, (lane.backend.name, conv)

    @invariant()
    def ended_sessions_never_change(self) -> None:
        for lane in self.lanes:
            for conv in CONVS:
                for session in self.sessions(lane, conv):
                    if session.status.value == "active":
                        continue
                    dump = session.model_dump()
                    assert lane.ended.setdefault(session.session_id, dump) == dump

    @invariant()
    def each_committed_message_answered_once_and_merged_once(self) -> None:
        """Every applied inbound text message is covered by exactly one stored reply or note
        about the reply once its effects are committed (none while pending), and a session's
        order is the sum of its committed messages' items."""
        inbound = {
            a.message.id
            for a in self.accepted
            if a.message.direction is MessageDirection.INBOUND
            and a.message.message_type is MessageType.TEXT
        }
        for lane in self.lanes:
            for conv in CONVS:
                pending = {
                    Message.model_validate_json(r.partition("\t")[2]).id
                    for r in lane.backend.pending_effects(conv)
                }
                for session in self.sessions(lane, conv):
                    if session.trimmed_count:
                        continue
                    self._check_session(lane, session, inbound, pending)

    def _check_session(
        self, lane: Lane, session: Session, inbound: set[str], pending: set[str]
    ) -> None:
        covered: Counter[str] = Counter()
        for m in session.messages:
            if m.direction is MessageDirection.OUTBOUND and (
                "in_reply_to" in m.metadata and m.metadata.get("event") in _REPLY_EVENTS
            ):
                covered.update(m.metadata.get("replies_to") or [m.metadata["in_reply_to"]])
        # Ended through the API, a session may have been ended before its last records' commit:
        # those are popped unanswered and unmerged.
        by_api = session.end_reason == "api"
        expected: Counter[str] = Counter()
        for m in session.messages:
            if m.id not in inbound:
                continue
            if m.id in pending:
                assert covered[m.id] == 0, (lane.backend.name, m)
                continue
            assert covered[m.id] in ((0, 1) if by_api else (1,)), (lane.backend.name, m)
            if covered[m.id] and (found := _ORDER.search(m.content)):
                expected[found[2]] += int(found[1])
        items = {i["name"]: i["quantity"] for i in (session.order_details or {}).get("items", [])}
        assert items == dict(expected), lane.backend.name

    @invariant()
    def the_stores_agree(self) -> None:
        """Side by side, the stores hold the same sessions (ids and system notes' random ids
        aside), inboxes, records and leases, and the extractors saw the same calls."""
        if len(self.lanes) < 2:
            return
        self.agree("state", [self.snapshot(lane) for lane in self.lanes])
        self.agree("extractions", [lane.extractor.calls for lane in self.lanes])
        self.agree("sends", [lane.sender.sent for lane in self.lanes])

    def snapshot(self, lane: Lane) -> Any:
        state = []
        for conv in CONVS:
            sessions = []
            for s in self.sessions(lane, conv):
                dump = s.model_dump(mode="json")
                dump["session_id"] = lane.name(s.session_id)
                for m in dump["messages"]:
                    if m["message_type"] == "system":
                        m["id"] = "sys"
                sessions.append(json.dumps(dump, sort_keys=True))
            records = [
                f"{lane.name(r.partition(chr(9))[0])}\t{r.partition(chr(9))[2]}"
                for r in lane.backend.pending_effects(conv)
            ]
            state.append(
                (
                    sorted(sessions),
                    lane.backend.inbox_depth(conv),
                    records,
                    lane.backend.leased(conv),
                )
            )
        return state


def _without_random_ids(item: str | int) -> str | int:
    """A history tail item with a system note's random id replaced (the stores' notes differ
    only there)."""
    if isinstance(item, int):
        return item
    message = json.loads(item)
    if message.get("message_type") == "system":
        message["id"] = "sys"
    return json.dumps(message, sort_keys=True)


def _memory(start_ms: int) -> Backend:
    return MemoryBackend(start_ms)


@pytest.fixture
def backends(request: pytest.FixtureRequest) -> list[Callable[[int], Backend]]:
    names: list[str] = request.param
    factories: list[Callable[[int], Backend]] = []
    for name in names:
        if name == "memory":
            factories.append(_memory)
        else:
            factories.append(_redis(request.getfixturevalue("redis_url")))
    return factories


def _redis(url: str) -> Callable[[int], Backend]:
    def factory(_start_ms: int) -> Backend:
        return RedisBackend(url)

    return factory


_SETTINGS = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize(
    "backends", [["memory"], ["redis"]], indirect=True, ids=["memory", "redis"]
)
def test_the_drain_applies_each_message_once_in_order_and_answers_it_once(
    backends: list[Callable[[int], Backend]],
) -> None:
    """The same rules and invariants hold on the in-memory store and on Redis."""
    run_state_machine_as_test(lambda: DrainMachine(backends, cap=10_000), settings=_SETTINGS)


@pytest.mark.parametrize("backends", [["memory", "redis"]], indirect=True, ids=["side-by-side"])
def test_the_in_memory_store_agrees_with_the_lua_step_by_step(
    backends: list[Callable[[int], Backend]],
) -> None:
    """Driven alike, the two stores give the same answer to every step and hold the same state
    (with a small history cap, so trimming and the effects' history tails are compared too)."""
    run_state_machine_as_test(lambda: DrainMachine(backends, cap=5), settings=_SETTINGS)


#: Boundaries the random runs reach only now and then, scripted: (rule, arguments) in order.
SCENARIOS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "a message accepted exactly a timeout after the last activity opens a new session": [
        ("accept", {"kind": "chat"}),
        ("drain", {}),
        ("advance_clock", {"minutes": 60}),
        ("accept", {"kind": "order"}),
        ("drain", {}),
    ],
    "an operator complete of a session idle for exactly a timeout reports it expired": [
        ("accept", {"kind": "chat"}),
        ("drain", {}),
        ("advance_clock", {"minutes": 60}),
        ("operate", {"trigger": "complete", "whose": "active"}),
        ("drain", {}),
    ],
    "a batch with records stops before a message accepted exactly a timeout later": [
        ("accept", {"kind": "order"}),
        ("advance_clock", {"minutes": 60}),
        ("accept", {"kind": "order"}),
        ("drain", {}),
    ],
    "a batch with records stops before an operator entry": [
        ("accept", {"kind": "order"}),
        ("operate", {"trigger": "expire", "whose": "newest"}),
        ("accept", {"kind": "order"}),
        ("drain", {}),
    ],
    "the history tail counts every message the batch appended, not only the records": [
        ("accept", {"kind": "chat"}),
        ("drain", {}),
        ("accept", {"kind": "outbound"}),
        ("accept", {"kind": "location"}),
        ("accept", {"kind": "order"}),
        ("drain", {}),
    ],
    "the history cap trims the oldest messages and the tail reads what is left": [
        *[("accept", {"kind": "chat"})] * 4,
        ("drain", {}),
        *[("accept", {"kind": "order"})] * 3,
        ("drain", {}),
    ],
    "a drain about to wrap its session counter applies nothing and keeps the lease": [
        ("accept", {"kind": "order"}),
        ("crash", {"counter": 0xFFFF}),
        ("lapse_leases", {}),
        ("crash", {"counter": 0xFFFE}),
        ("late_commit", {}),
        ("drain", {}),
    ],
    "a stalled drain's late commit goes through while it holds the lease, else is refused": [
        ("accept", {"kind": "order"}),
        ("crash", {"counter": 0}),
        ("late_commit", {}),
        ("accept", {"kind": "order"}),
        ("crash", {"counter": 0}),
        ("lapse_leases", {}),
        ("drain", {}),
        ("late_commit", {}),
    ],
    "records of a session the API ended meanwhile are popped unanswered": [
        ("accept", {"kind": "order"}),
        ("crash", {"counter": 0}),
        ("api_end", {"trigger": "complete"}),
        ("lapse_leases", {}),
        ("drain", {}),
    ],
    "a batch with records stops before a malformed entry, which is dropped": [
        ("accept", {"kind": "order"}),
        ("accept_odd_entry", {"entry": "garbage"}),
        ("accept_odd_entry", {"entry": "1\tm\tinbound"}),
        ("accept", {"kind": "order"}),
        ("drain", {}),
    ],
    "an entry of an unknown kind expires the active session": [
        ("accept", {"kind": "chat"}),
        ("drain", {}),
        ("accept_odd_entry", {"entry": "unknown kind"}),
        ("drain", {}),
    ],
    "an operation naming another phone's session finds it missing": [
        ("accept", {"kind": "chat", "conv": CONVS[1]}),
        ("drain", {"conv": CONVS[1]}),
        ("operate", {"trigger": "complete", "whose": "other phone's"}),
        ("drain", {}),
    ],
    "a reply past WhatsApp's window is a note, and a duplicate is refused": [
        ("accept", {"kind": "order"}),
        ("crash", {"counter": 0}),
        ("advance_clock", {"minutes": 24 * 60 + 1}),
        ("lapse_leases", {}),
        ("drain", {}),
        ("resend", {}),
    ],
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "accept": {"conv": CONVS[0], "item": "apple", "quantity": 2},
    "operate": {"conv": CONVS[0]},
    "drain": {"conv": CONVS[0]},
    "crash": {"conv": CONVS[0]},
    "late_commit": {"conv": CONVS[0]},
    "api_end": {"conv": CONVS[0]},
    "accept_odd_entry": {"conv": CONVS[0]},
}


@pytest.mark.parametrize("backends", [["memory", "redis"]], indirect=True, ids=["side-by-side"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_stores_agree_at_the_boundaries(
    backends: list[Callable[[int], Backend]], scenario: str
) -> None:
    """Each scripted scenario, step by step on both stores, with every invariant after each
    step."""
    machine = DrainMachine(backends, cap=5)
    try:
        for name, arguments in SCENARIOS[scenario]:
            rule_arguments = {**_DEFAULTS.get(name, {}), **arguments}
            if name == "resend":
                machine.resend_message(machine.accepted[-1])
            else:
                getattr(machine, name)(**rule_arguments)
            machine.check_all()
    finally:
        machine.teardown()
