"""The production drain (``workers.drain.drain``) and its effects on the in-memory store, with a
fake extractor and sender: order of application, one reply per batch, crash recovery, fencing,
no reply to an ended session, and where a batch stops. No Redis; each test well under a second.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tests.conftest import FakeClock
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.replies.sender import SendFailure, SendResult
from wa_sessions.statemachine.entries import EntryKind, message_entry, operation_entry
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.memory import InMemoryStore
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType, Session
from wa_sessions.statemachine.steps import DrainPolicy, DrainStep, IngestOutcome, to_ms
from wa_sessions.workers.drain import DrainContext, DrainReport, drain
from wa_sessions.workers.effects import Effects, EffectsBatch, run_effects
from wa_sessions.workers.lease import Lease

CONV = Conversation("+14155550100", "+14155238886").key
LEASE_SECONDS = 5.0
TIMEOUT_MS = 3_600_000
_ORDER = re.compile(r"(\d+) x (\w+)")


@dataclass
class FakeExtractor:
    """Reads ``<n> x <item>``; anything else says nothing. ``before`` runs inside each call."""

    name: str = "fake"
    budget_seconds: float = 0.0
    history_limit: int = 5
    calls: list[str] = field(default_factory=list)
    before: Callable[[], Awaitable[None]] | None = None

    async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
        self.calls.append(request.message.content)
        if self.before is not None:
            await self.before()
        match = _ORDER.search(request.message.content)
        if match is None:
            return ExtractionResult.nothing()
        change = ItemChange(action=ItemAction.ADD, name=match[2], quantity=int(match[1]))
        return ExtractionResult(found=True, changes=[change])


@dataclass
class FakeSender:
    """Records what it sends and answers with numbered Twilio-like SIDs."""

    name: str = "twilio"
    budget_seconds: float = 0.0
    sent: list[str] = field(default_factory=list)

    async def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        self.sent.append(body)
        return SendResult(sid=f"SM{len(self.sent):032d}", status="queued", sent=True)


@dataclass
class World:
    """One phone on an in-memory store whose lease clock is the fake clock."""

    clock: FakeClock = field(default_factory=FakeClock)
    extractor: FakeExtractor = field(default_factory=FakeExtractor)
    sender: FakeSender = field(default_factory=FakeSender)
    store: InMemoryStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = InMemoryStore(clock=lambda: to_ms(self.clock()))

    @property
    def ctx(self) -> DrainContext:
        return DrainContext(
            store=self.store,
            policy=DrainPolicy(
                lease_ms=int(LEASE_SECONDS * 1000),
                batch=100,
                timeout_ms=TIMEOUT_MS,
                cap=1000,
                keep_ms=86_400_000,
                effects=True,
                history=self.extractor.history_limit,
            ),
            effects=Effects(self.extractor, self.sender),
            lease_seconds=LEASE_SECONDS,
            clock=self.clock,
        )

    def accept(
        self,
        content: str,
        *,
        message_type: MessageType = MessageType.TEXT,
        direction: MessageDirection = MessageDirection.INBOUND,
    ) -> Message:
        message = Message(
            id="SM" + uuid.uuid4().hex,
            content=content,
            message_type=message_type,
            direction=direction,
            timestamp=self.clock(),
        )
        now = to_ms(self.clock())
        outcome = self.store.ingest(
            CONV,
            message_entry(message, now),
            message_sid=message.id,
            accepted_ms=now,
            dedupe_ttl_ms=7 * 86_400_000,
            max_depth=100,
            wake_ttl_ms=int(LEASE_SECONDS * 1000),
        )
        assert outcome > IngestOutcome.DUPLICATE
        return message

    def request(self, trigger: str, session_id: str = "") -> None:
        now = to_ms(self.clock())
        entry = operation_entry(trigger, session_id, uuid.uuid4().hex, now, "operator")
        self.store.push_operation(CONV, entry, accepted_ms=now, wake_ttl_ms=5000)

    def drain(self) -> DrainReport:
        return asyncio.run(drain(self.ctx, CONV))

    def step(self, token: str, *, acquire: bool) -> DrainStep:
        return asyncio.run(
            self.store.drain_step(
                CONV,
                token,
                self.ctx.policy,
                acquire=acquire,
                now_ms=to_ms(self.clock()),
                id_base=uuid.uuid4().hex[:-4] + "0000",
            )
        )

    def run_effects(self, step: DrainStep, token: str) -> EffectsBatch | None:
        ctx = self.ctx
        assert ctx.effects is not None
        lease = Lease(self.store, CONV, token, LEASE_SECONDS)
        return asyncio.run(run_effects(lease, ctx.effects, step, self.clock))

    def sessions(self) -> list[Session]:
        found = [self.store.load(sid) for sid in self.store.conversation_session_ids(CONV)]
        return [s for s in found if s is not None]

    def history(self) -> list[tuple[str, str]]:
        return [(m.direction.value, m.content) for s in self.sessions() for m in s.messages]

    def nothing_left(self) -> bool:
        return (
            self.store.inbox_depth(CONV) == 0
            and self.store.pending_effects(CONV) == []
            and self.store.lease_holder(CONV) is None
            and CONV not in self.store.pending
        )


@pytest.fixture
def w() -> World:
    return World()


def test_entries_are_applied_in_acceptance_order_and_answered_after_them(w: World) -> None:
    """Inbound text, a location and an outbound message waiting together are stored in the order
    they were accepted; the one reply follows them and only the text had effects."""
    w.accept("hello")
    w.accept("52.1,4.3", message_type=MessageType.LOCATION)
    w.accept("we are open", direction=MessageDirection.OUTBOUND)
    w.clock.advance(seconds=1)
    w.accept("2 x apple")

    report = w.drain()

    assert w.history() == [
        ("inbound", "hello"),
        ("inbound", "52.1,4.3"),
        ("outbound", "we are open"),
        ("inbound", "2 x apple"),
        ("outbound", w.sender.sent[0]),
    ]
    assert w.extractor.calls == ["hello", "2 x apple"]
    assert (report.outcome, report.applied, report.effects) == ("drained", 4, 2)
    assert w.nothing_left()


def test_a_batch_gets_one_reply_covering_all_its_messages(w: World) -> None:
    """Three messages drained together: one send, whose stored reply names all three, and the
    order merged from both that said something."""
    ids = [w.accept(text).id for text in ("2 x apple", "thanks", "3 x pear")]

    w.drain()

    (session,) = w.sessions()
    assert len(w.sender.sent) == 1
    reply = session.messages[-1]
    assert reply.metadata["replies_to"] == ids
    assert reply.metadata["in_reply_to"] == ids[-1]
    assert session.order_details is not None
    assert [(i["name"], i["quantity"]) for i in session.order_details["items"]] == [
        ("apple", 2),
        ("pear", 3),
    ]


def test_a_crash_between_effects_and_commit_reruns_the_batch_once(w: World) -> None:
    """A drain that ran a batch's effects (the reply left) and died before its commit: once its
    lease lapses, the next drain runs the batch again; the order is merged once and one reply is
    stored, though two were sent."""
    w.accept("2 x apple")
    dead = w.step("dead", acquire=True)
    assert w.run_effects(dead, "dead") is not None
    w.clock.advance(seconds=LEASE_SECONDS + 1)

    report = w.drain()

    (session,) = w.sessions()
    assert w.extractor.calls == ["2 x apple", "2 x apple"]
    assert len(w.sender.sent) == 2
    assert [m.direction.value for m in session.messages] == ["inbound", "outbound"]
    assert session.order_details is not None
    assert session.order_details["items"] == [{"name": "apple", "quantity": 2, "unit": None}]
    assert report.effects == 1
    assert w.nothing_left()


def test_a_drain_that_lost_its_lease_commits_nothing(w: World) -> None:
    """The lease lapses while the extraction runs and another drain takes it: the first drain's
    commit is refused, nothing of its batch is stored, and the records wait for the new holder."""

    async def lose_the_lease() -> None:
        w.clock.advance(seconds=LEASE_SECONDS + 1)
        thief = await w.store.drain_step(
            CONV, "thief", w.ctx.policy, acquire=True, now_ms=to_ms(w.clock()), id_base="0" * 36
        )
        assert thief.status == "ok"

    w.extractor.before = lose_the_lease
    w.accept("2 x apple")

    report = w.drain()

    assert report.outcome == "lease_lost"
    (session,) = w.sessions()
    assert [m.content for m in session.messages] == ["2 x apple"]
    assert session.order_details is None
    assert len(w.store.pending_effects(CONV)) == 1
    assert w.store.lease_holder(CONV) == "thief"


def test_a_session_ended_before_the_send_gets_no_reply(w: World) -> None:
    """Completed through the API while its extraction ran: the sender sees nothing, nothing is
    appended to the ended session, and the records are popped."""

    async def complete() -> None:
        (session,) = w.sessions()
        outcome = w.store.end_session(
            session.session_id, "complete", now_ms=to_ms(w.clock()), reason="operator"
        )
        assert outcome == ("ok", "completed")

    w.extractor.before = complete
    w.accept("2 x apple")

    report = w.drain()

    assert w.sender.sent == []
    (session,) = w.sessions()
    assert session.status.value == "completed"
    assert [m.content for m in session.messages] == ["2 x apple"]
    assert session.order_details is None
    assert report.outcome == "drained"
    assert w.nothing_left()


def test_a_batch_stops_before_a_message_accepted_a_timeout_later(w: World) -> None:
    """An order and, waiting behind it, a message accepted a timeout later: the first step
    applies only the order, so its reply comes before the late message is applied."""
    first = w.accept("2 x apple")
    w.clock.advance(milliseconds=TIMEOUT_MS)
    w.accept("3 x pear")

    step = w.step("probe", acquire=True)
    assert [r.direction for r in step.results] == ["inbound"]
    assert [r.split("\t", 1)[1] for r in step.effects] == [
        first.model_dump_json(exclude_defaults=True)
    ]
    w.clock.advance(seconds=LEASE_SECONDS + 1)
    w.extractor.calls.clear()

    w.drain()

    assert [d for d, _ in w.history()] == ["inbound", "outbound", "inbound", "outbound"]
    assert w.history()[2] == ("inbound", "3 x pear")
    answered = w.sessions()[0].messages[1]
    assert answered.metadata["in_reply_to"] == first.id
    assert len(w.sender.sent) == 2
    assert w.nothing_left()


def test_an_operator_complete_behind_queued_messages_waits_for_their_reply(w: World) -> None:
    """Messages, a complete for the active session, then another message, all waiting: the
    messages are answered in their session before the complete ends it, and the last message
    opens a new session with its own reply."""
    w.accept("2 x apple")
    w.accept("1 x pear")
    w.request("complete")
    w.clock.advance(seconds=1)
    w.accept("3 x fig")

    report = w.drain()

    old, new = w.sessions()
    assert old.status.value == "completed"
    assert [m.direction.value for m in old.messages] == ["inbound", "inbound", "outbound"]
    assert old.messages[-1].metadata["replies_to"] == [m.id for m in old.messages[:2]]
    assert new.status.value == "active"
    assert new.messages[0].content == "3 x fig"
    assert [r.detail for r in report.results if r.kind == EntryKind.COMPLETE] == ["completed"]
    assert len(w.sender.sent) == 2
    assert w.nothing_left()


def test_an_operator_complete_of_an_idle_session_reports_it_expired(w: World) -> None:
    """A complete accepted a timeout after the session's last activity finds it already
    expired: it ends as expired (reason timeout) and the operation is ``invalid:expired``."""
    w.accept("hello")
    w.drain()
    w.clock.advance(milliseconds=TIMEOUT_MS)
    w.request("complete")

    report = w.drain()

    (session,) = w.sessions()
    assert (session.status.value, session.end_reason) == ("expired", "timeout")
    assert [r.detail for r in report.results] == ["invalid:expired"]
