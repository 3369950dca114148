"""Order extraction and replies run by the per-phone drain on the real Redis: the order and the
reply land in the session, a burst of messages drained together gets one reply after them, a
crash between apply and commit is finished once by the next drain, the 24-hour window is
respected and outages are recorded without holding the phone's next messages beyond the budget.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from tests.conftest import FakeClock
from tests.fake_apis import (
    OPENAI_KEY,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeOpenAI,
    FakeTwilio,
    Reply,
    fake_openai,
    fake_twilio,
    twilio_error,
)
from wa_sessions.flows.registry import FlowTemplates
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.orders.openai import OpenAIOrderExtractor
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.replies.sender import LogSender, OutboundSender, SendFailure, SendResult
from wa_sessions.replies.templates import text as reply_text
from wa_sessions.replies.twilio import TwilioSender
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.entries import effect_record
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType, Session
from wa_sessions.statemachine.redis.inbox import Inbox, InboxPolicy
from wa_sessions.statemachine.redis.store import RedisSessionStore
from wa_sessions.statemachine.service import SessionService, new_session_id
from wa_sessions.statemachine.steps import DrainStep, EffectsCommit, IngestOutcome, to_ms
from wa_sessions.workers import handlers
from wa_sessions.workers.effects import EffectsBatch, run_effects
from wa_sessions.workers.handlers import DrainReport, WorkerDeps
from wa_sessions.workers.lease import Lease

BUSINESS = "+14155238886"
PHONE = "+14155550100"
CONV = Conversation(PHONE, BUSINESS).key

NOTHING_TEMPLATE = reply_text("nothing", "en")


@dataclass
class FakeSender:
    """An ``OutboundSender`` that records sends and answers with Twilio-like SIDs."""

    name: str = "twilio"
    budget_seconds: float = 0.0
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    fail_with: SendFailure | None = None

    async def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        if self.fail_with is not None:
            return self.fail_with
        self.sent.append((to, from_, body))
        return SendResult(sid="SM" + uuid.uuid4().hex, status="queued", sent=True)


@dataclass
class Harness:
    service: SessionService
    inbox: Inbox
    deps: WorkerDeps
    clock: FakeClock
    woken: list[str]

    @property
    def store(self) -> RedisSessionStore:
        return self.service.store

    def accept(self, *contents: str, message_type: MessageType = MessageType.TEXT) -> None:
        for content in contents:
            message = Message(
                id="SM" + uuid.uuid4().hex,
                content=content,
                message_type=message_type,
                timestamp=self.clock(),
            )
            outcome = self.inbox.accept(CONV, message, accepted_ms=to_ms(self.clock()))
            assert outcome > IngestOutcome.DUPLICATE

    def drain(self) -> DrainReport:
        return handlers.drain_conversation(self.deps, CONV)

    def session(self) -> Session:
        sid = self.store.latest_session_id(CONV)
        assert sid is not None
        session = self.store.load(sid)
        assert session is not None
        return session

    def history(self) -> list[tuple[str, str, str]]:
        return [
            (m.direction.value, m.message_type.value, m.content) for m in self.session().messages
        ]

    def step(self, token: str, *, acquire: bool, commit: EffectsCommit | None = None) -> DrainStep:
        """One ``drain_step`` as a drain holding ``token`` would take it (a drain that then
        dies is one that never takes the next)."""
        return self.store.drain_step(
            CONV,
            token,
            self.deps.policy(self.deps.effects),
            acquire=acquire,
            now_ms=self.service.now_ms(),
            id_base=new_session_id(),
            commit=commit,
        )

    def run_effects(
        self, step: DrainStep, token: str, *, lease_seconds: float
    ) -> EffectsBatch | None:
        """Runs a step's effects as the drain holding ``token`` would, on the drain loop."""
        effects = self.deps.effects
        assert effects is not None
        return self.deps.runner().call(
            lambda ctx: run_effects(
                Lease(ctx.store, CONV, token, lease_seconds), effects, step, self.clock
            )
        )

    def wait_for_lease_to_lapse(self) -> None:
        lease = self.store.keys.conv_lease(CONV)
        deadline = time.monotonic() + 5
        while self.store.client.exists(lease):
            assert time.monotonic() < deadline
            time.sleep(0.01)


HarnessFactory = Callable[..., Harness]


def build_harness(
    redis_client: redis.Redis,
    clock: FakeClock,
    *,
    extractor: OrderExtractor | None = None,
    sender: OutboundSender | None = None,
    lease_seconds: float = 5.0,
    session_timeout_hours: float = 48.0,
    flow_templates: FlowTemplates | None = None,
) -> Harness:
    """The drain's dependencies over the test Redis, with a fake clock and the given parts."""
    service = SessionService(redis_client, clock=clock, session_timeout_hours=session_timeout_hours)
    inbox = Inbox(service.store, InboxPolicy(lease_seconds=lease_seconds))
    woken: list[str] = []
    deps = WorkerDeps(
        service=service,
        inbox=inbox,
        wake=woken.append,
        lease_seconds=lease_seconds,
        extractor=extractor or RuleBasedOrderExtractor(),
        sender=sender or LogSender(),
        flow_templates=flow_templates or FlowTemplates(),
    )
    return Harness(service, inbox, deps, clock, woken)


@pytest.fixture
def make_harness(redis_client: redis.Redis, clock: FakeClock) -> HarnessFactory:
    def make(**options: Any) -> Harness:
        return build_harness(redis_client, clock, **options)

    return make


@pytest.fixture
def h(make_harness: HarnessFactory) -> Harness:
    return make_harness()


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def nothing_left(h: Harness) -> bool:
    keys = h.store.keys
    return (
        h.store.pending_effects(CONV) == []
        and h.store.inbox_depth(CONV) == 0
        and h.store.pending_summary() == (0, None)
        and not h.store.client.exists(keys.conv_lease(CONV))
    )


# ---- the happy path ------------------------------------------------------------------------


def test_an_order_message_stores_the_order_and_records_the_reply(h: Harness) -> None:
    """ "I need 5 units of Product A" gives order_details.items [{Product A, 5}] and an
    outbound reply, recorded but marked not sent without Twilio credentials."""
    logged = sample("wa_sessions_replies_total", {"sender": "log", "outcome": "logged"})
    found = sample("wa_sessions_extractions_total", {"extractor": "rule_based", "outcome": "found"})

    h.accept("I need 5 units of Product A")
    report = h.drain()

    session = h.session()
    assert session.order_details is not None
    assert session.order_details["items"] == [{"name": "Product A", "quantity": 5, "unit": "units"}]
    assert h.history() == [
        ("inbound", "text", "I need 5 units of Product A"),
        ("outbound", "text", "✅ Order received: 5 units of Product A"),
    ]
    reply = session.messages[1]
    assert reply.metadata == {
        "sender": "log",
        "sent": False,
        "delivery_status": "not_sent",
        "in_reply_to": session.messages[0].id,
    }
    assert (report.applied, report.effects, report.outcome) == (1, 1, "drained")
    assert nothing_left(h)
    assert sample("wa_sessions_replies_total", {"sender": "log", "outcome": "logged"}) == logged + 1
    assert (
        sample("wa_sessions_extractions_total", {"extractor": "rule_based", "outcome": "found"})
        == found + 1
    )


def test_recorded_replies_are_counted_as_outbound_messages(h: Harness) -> None:
    """``wa_sessions_messages_total`` counts what the drain stores in both directions: the
    customer's message as inbound, the committed reply as outbound."""
    inbound = {"direction": "inbound", "type": "text"}
    outbound = {"direction": "outbound", "type": "text"}
    before = (
        sample("wa_sessions_messages_total", inbound),
        sample("wa_sessions_messages_total", outbound),
    )

    h.accept("I need 5 units of Product A", "and 3 boxes of apples")
    h.drain()

    assert (
        sample("wa_sessions_messages_total", inbound),
        sample("wa_sessions_messages_total", outbound),
    ) == (before[0] + 2, before[1] + 1)


def test_follow_up_messages_change_and_remove_items(h: Harness) -> None:
    """ "make that 6" changes the item discussed last; "remove the apples" drops one. Drained
    one at a time, each message gets its own reply."""
    replies = []
    for text in ("I need 5 units of Product A", "3 boxes of apples", "make that 6"):
        h.accept(text)
        h.drain()
        replies.append(h.history()[-1][2])
    h.accept("remove the apples")
    h.drain()
    replies.append(h.history()[-1][2])

    session = h.session()
    assert session.order_details is not None
    assert session.order_details["items"] == [{"name": "Product A", "quantity": 5, "unit": "units"}]
    assert replies == [
        "✅ Order received: 5 units of Product A",
        "✅ Order received: 5 units of Product A, 3 boxes of apples",
        "✅ Order received: 5 units of Product A, 6 boxes of apples",
        "✅ Order received: 5 units of Product A",
    ]
    assert [d for d, _, _ in h.history()] == ["inbound", "outbound"] * 4


def test_a_burst_drained_together_gets_one_reply_with_the_merged_order(h: Harness) -> None:
    """N messages waiting together: N stored inbound messages, the order merged from all of
    them in order (each extraction sees the order the earlier ones left, and "make that 6"
    finds the item the customer mentioned last in the burst, not the one added last), and
    exactly one reply after them, answering all of them."""
    texts = [
        "3 boxes of apples",
        "I need 5 units of Product A",
        "how fresh are the apples?",
        "make that 6",
        "Thanks!",
    ]
    logged = sample("wa_sessions_replies_total", {"sender": "log", "outcome": "logged"})
    found = sample("wa_sessions_extractions_total", {"extractor": "rule_based", "outcome": "found"})
    nothing = sample(
        "wa_sessions_extractions_total", {"extractor": "rule_based", "outcome": "nothing"}
    )
    h.accept(*texts)

    report = h.drain()

    session = h.session()
    assert [(d, c) for d, _, c in h.history()] == [
        *[("inbound", text) for text in texts],
        ("outbound", "✅ Order received: 6 boxes of apples, 5 units of Product A"),
    ]
    assert session.order_details is not None
    assert session.order_details["items"] == [
        {"name": "apples", "quantity": 6, "unit": "boxes"},
        {"name": "Product A", "quantity": 5, "unit": "units"},
    ]
    ids = [m.id for m in session.messages[:5]]
    reply = session.messages[5]
    assert reply.metadata["in_reply_to"] == ids[-1]
    assert reply.metadata["replies_to"] == ids
    assert (report.applied, report.effects, report.outcome) == (5, 5, "drained")
    assert nothing_left(h)
    assert sample("wa_sessions_replies_total", {"sender": "log", "outcome": "logged"}) == logged + 1
    assert (
        sample("wa_sessions_extractions_total", {"extractor": "rule_based", "outcome": "found"})
        == found + 3
    )
    assert (
        sample("wa_sessions_extractions_total", {"extractor": "rule_based", "outcome": "nothing"})
        == nothing + 2
    )


def test_a_burst_that_says_nothing_about_the_order_gets_one_hint(
    make_harness: HarnessFactory,
) -> None:
    """Two messages with no order in them: one "Sorry, I couldn't find an order", not two."""
    sender = FakeSender()
    h = make_harness(sender=sender)
    h.accept("hello", "anyone there?")

    h.drain()

    assert [body for _, _, body in sender.sent] == [NOTHING_TEMPLATE]
    assert [d for d, _, _ in h.history()] == ["inbound", "inbound", "outbound"]


def test_the_extractor_sees_the_stored_history_before_the_batch(h: Harness) -> None:
    """The history of a batch's first message comes from the stored session: "make that 6",
    alone in its batch, still finds the item mentioned last in an earlier one."""
    h.accept("3 boxes of apples", "I need 5 units of Product A", "how fresh are the apples?")
    h.drain()
    h.accept("make that 6")
    h.drain()

    session = h.session()
    assert session.order_details is not None
    assert session.order_details["items"][0] == {"name": "apples", "quantity": 6, "unit": "boxes"}
    assert h.history()[-1][2] == "✅ Order received: 6 boxes of apples, 5 units of Product A"
    assert "replies_to" not in session.messages[-1].metadata


def test_a_batch_across_an_operator_complete_gets_one_reply_per_session(
    make_harness: HarnessFactory,
) -> None:
    """Messages, an operator's complete, then more messages, all waiting together: the
    messages before the complete are answered in their session before it ends, those after
    it in the new session; one reply each."""
    sender = FakeSender()
    h = make_harness(sender=sender)
    h.accept("x")
    h.drain()
    first = h.session().session_id
    h.accept("2 x Margherita pizza", "and 1 x tiramisu")
    h.inbox.request(CONV, "complete", first, accepted_ms=h.service.now_ms(), reason="operator")
    h.clock.advance(seconds=1)
    h.accept("3 boxes of apples", "thanks")

    report = h.drain()

    old = h.store.load(first)
    assert old is not None
    assert old.status.value == "completed"
    assert [(m.direction.value, m.content) for m in old.messages[2:]] == [
        ("inbound", "2 x Margherita pizza"),
        ("inbound", "and 1 x tiramisu"),
        ("outbound", "✅ Order received: 2 x Margherita pizza, 1 x tiramisu"),
    ]
    new = h.session()
    assert new.session_id != first
    assert [(m.direction.value, m.content) for m in new.messages] == [
        ("inbound", "3 boxes of apples"),
        ("inbound", "thanks"),
        ("outbound", "✅ Order received: 3 boxes of apples"),
    ]
    assert new.order_details is not None
    assert [i["name"] for i in new.order_details["items"]] == ["apples"]
    assert len(sender.sent) == 3
    assert (report.applied, report.effects) == (5, 4)
    assert nothing_left(h)


def test_a_batch_stops_at_a_message_late_enough_to_expire_the_session(
    make_harness: HarnessFactory,
) -> None:
    """An order, then (waiting in the same inbox) a message accepted more than the session
    timeout later: the batch stops before the late message, so the order is answered in its
    session while that is still open, and the late message is applied and answered after.
    Applied in one batch, the late message would expire the session first and the order's
    reply would be dropped with it."""
    sender = FakeSender()
    # A timeout inside WhatsApp's 24-hour window, so that both replies may be sent.
    h = make_harness(sender=sender, session_timeout_hours=1.0)
    h.accept("I need 5 units of Product A")
    h.clock.advance(hours=1, seconds=1)
    h.accept("3 boxes of apples")

    report = h.drain()

    first = report.results[0].session_id
    sessions = list(dict.fromkeys(r.session_id for r in report.results))
    history = []
    for sid in sessions:
        session = h.store.load(sid)
        assert session is not None
        history += [(m.direction.value, m.content) for m in session.messages]
    assert history == [
        ("inbound", "I need 5 units of Product A"),
        ("outbound", "✅ Order received: 5 units of Product A"),
        ("inbound", "3 boxes of apples"),
        ("outbound", "✅ Order received: 5 units of Product A, 3 boxes of apples")
        if len(sessions) == 1
        else ("outbound", "✅ Order received: 3 boxes of apples"),
    ]
    answered_order = h.store.load(first)
    assert answered_order is not None
    assert answered_order.messages[1].metadata["in_reply_to"] == answered_order.messages[0].id
    assert len(sender.sent) == 2
    assert (report.applied, report.effects) == (2, 2)
    assert nothing_left(h)


def test_records_of_several_sessions_are_grouped_by_session(
    make_harness: HarnessFactory,
) -> None:
    """Records that span sessions (say, one left by a worker of an earlier version for a
    session that has ended since): grouped by session, the ended session's are only popped,
    and the live session gets one reply built from its own messages only."""
    sender = FakeSender()
    h = make_harness(sender=sender)
    h.accept("2 x Margherita pizza")
    h.drain()
    ended = h.session().session_id
    h.service.complete_session(ended)
    h.clock.advance(seconds=1)
    h.accept("3 boxes of apples")
    dead = h.step("dead-drain", acquire=True)
    assert len(dead.effects) == 1
    h.store.client.delete(h.store.keys.conv_lease(CONV))
    late = Message(id="SM" + uuid.uuid4().hex, content="1 x tiramisu", timestamp=h.clock())
    h.store.client.lpush(h.store.keys.conv_effects(CONV), effect_record(ended, late))

    report = h.drain()

    assert report.effects == 2
    old = h.store.load(ended)
    assert old is not None
    assert [m.content for m in old.messages][-1] == "✅ Order received: 2 x Margherita pizza"
    assert h.history() == [
        ("inbound", "text", "3 boxes of apples"),
        ("outbound", "text", "✅ Order received: 3 boxes of apples"),
    ]
    assert [body for _, _, body in sender.sent][-1] == "✅ Order received: 3 boxes of apples"
    assert nothing_left(h)


def test_a_sent_reply_is_mapped_from_its_twilio_sid(make_harness: HarnessFactory) -> None:
    """A reply Twilio accepted carries its MessageSid and status; the SID maps back to the
    session and message for status callbacks, with the retention TTL."""
    sender = FakeSender()
    h = make_harness(sender=sender)

    h.accept("3 boxes of apples")
    h.drain()

    reply = h.session().messages[1]
    sid = reply.metadata["twilio_sid"]
    assert reply.id == sid
    assert reply.metadata["delivery_status"] == "queued"
    assert reply.metadata["sent"] is True
    assert sender.sent == [(PHONE, BUSINESS, "✅ Order received: 3 boxes of apples")]
    mapped = h.store.outbound(sid)
    assert (mapped["sess"], mapped["mid"], mapped["pos"], mapped["status"]) == (
        h.session().session_id,
        sid,
        "1",
        "queued",
    )
    ttl_ms = h.store.client.pttl(h.store.keys.outbound(sid))
    assert 0 < ttl_ms <= h.service.keep_ms


def test_locations_and_outbound_entries_have_no_effects(h: Harness) -> None:
    """Only inbound text and image messages are extracted and answered: a location and an
    outbound text that reads like an order get no extraction, no reply, no order."""
    location = Message(
        id="SM" + uuid.uuid4().hex,
        content="",
        message_type=MessageType.LOCATION,
        timestamp=h.clock(),
        metadata={"location": {"latitude": 1.0, "longitude": 2.0}},
    )
    outbound = Message(
        id="SM" + uuid.uuid4().hex,
        content="I need 5 units of Product A",
        direction=MessageDirection.OUTBOUND,
        timestamp=h.clock(),
    )
    for message in (location, outbound):
        outcome = h.inbox.accept(CONV, message, accepted_ms=to_ms(h.clock()))
        assert outcome > IngestOutcome.DUPLICATE
    extractions = sample(
        "wa_sessions_extractions_total", {"extractor": "rule_based", "outcome": "found"}
    )
    report = h.drain()

    assert (report.applied, report.effects) == (2, 0)
    assert h.history() == [
        ("inbound", "location", ""),
        ("outbound", "text", "I need 5 units of Product A"),
    ]
    assert h.session().order_details is None
    assert (
        sample("wa_sessions_extractions_total", {"extractor": "rule_based", "outcome": "found"})
        == extractions
    )
    assert nothing_left(h)


# ---- crashes and leases --------------------------------------------------------------------


def test_effects_left_by_a_dead_drain_are_finished_once_by_the_next(
    make_harness: HarnessFactory,
) -> None:
    """A drain that applied a message and died before committing its effects: the lease
    lapses, the re-drive pass wakes the phone, and the next drain sends the reply once and
    only then applies the message that arrived meanwhile."""
    sender = FakeSender()
    h = make_harness(sender=sender, lease_seconds=0.2)
    h.accept("I need 5 units of Product A")
    dead = h.step("dead-drain", acquire=True)
    assert len(dead.effects) == 1
    assert not dead.released
    h.accept("Thanks!")  # arrives while the effects are still pending

    h.wait_for_lease_to_lapse()
    assert h.store.pending_effects(CONV) == dead.effects
    assert handlers.redrive(h.deps) == 1
    first = h.drain()
    second = h.drain()

    assert [body for _, _, body in sender.sent] == [
        "✅ Order received: 5 units of Product A",
        NOTHING_TEMPLATE,
    ]
    assert [(d, c) for d, _, c in h.history()] == [
        ("inbound", "I need 5 units of Product A"),
        ("outbound", "✅ Order received: 5 units of Product A"),
        ("inbound", "Thanks!"),
        ("outbound", NOTHING_TEMPLATE),
    ]
    assert (first.effects, first.applied, second.effects, second.applied) == (2, 1, 0, 0)
    assert nothing_left(h)


def test_a_crash_after_the_replies_reruns_the_batch_once(make_harness: HarnessFactory) -> None:
    """A drain that applied a burst, ran its effects (the reply went out) and died before the
    commit: the next drain runs the whole batch again. No message is lost, the reply is sent
    a second time (at least once) but stored once, and the order is merged once (not 10 units
    where the customer asked for 5)."""
    sender = FakeSender()
    h = make_harness(sender=sender, lease_seconds=0.2)
    h.accept("I need 5 units of Product A", "and 3 boxes of apples", "thanks")
    dead = h.step("dead-drain", acquire=True)
    assert len(dead.effects) == 3
    effects = h.deps.effects
    assert effects is not None
    batch = h.run_effects(dead, "dead-drain", lease_seconds=0.2)
    assert batch is not None  # the reply went out; the drain dies before its next step
    assert len(sender.sent) == 1

    h.wait_for_lease_to_lapse()
    assert handlers.redrive(h.deps) == 1
    report = h.drain()

    assert (report.applied, report.effects) == (0, 3)
    expected = "✅ Order received: 5 units of Product A, 3 boxes of apples"
    assert [body for _, _, body in sender.sent] == [expected, expected]
    assert h.history() == [
        ("inbound", "text", "I need 5 units of Product A"),
        ("inbound", "text", "and 3 boxes of apples"),
        ("inbound", "text", "thanks"),
        ("outbound", "text", expected),
    ]
    session = h.session()
    assert session.order_details is not None
    assert [(i["name"], i["quantity"]) for i in session.order_details["items"]] == [
        ("Product A", 5),
        ("apples", 3),
    ]
    # The dead drain's commit, had it come late, is refused: its lease is gone.
    late = h.step("dead-drain", acquire=False, commit=batch.commit)
    assert late.status == "lease"
    assert len(h.session().messages) == 4
    assert nothing_left(h)


def test_a_commit_of_records_that_are_not_the_head_is_refused(h: Harness) -> None:
    """Fencing by content: the committed records must be the effects list's head, in order;
    otherwise nothing is committed or popped."""
    h.accept("2 x Margherita pizza", "3 boxes of apples")
    step = h.step("drain", acquire=True)
    assert len(step.effects) == 2
    effects = h.deps.effects
    assert effects is not None
    batch = h.run_effects(step, "drain", lease_seconds=5.0)
    assert batch is not None
    swapped = EffectsCommit(list(reversed(step.effects)), batch.commit.sessions, h.clock())

    refused = h.step("drain", acquire=False, commit=swapped)

    assert refused.status == "head"
    assert h.store.pending_effects(CONV) == step.effects
    assert [d for d, _, _ in h.history()] == ["inbound", "inbound"]
    done = h.step("drain", acquire=False, commit=batch.commit)
    assert (done.status, done.released, done.committed) == ("ok", True, ["ok"])
    assert [d for d, _, _ in h.history()] == ["inbound", "inbound", "outbound"]
    assert nothing_left(h)


def test_pending_effects_alone_keep_the_phone_pending_and_are_redriven(
    make_harness: HarnessFactory,
) -> None:
    """With the inbox empty but effects uncommitted, the phone is neither released nor
    forgotten: it stays in the pending index, the re-drive pass wakes it, a drain commits."""
    h = make_harness(lease_seconds=0.2)
    h.accept("2 x Margherita pizza")
    dead = h.step("dead-drain", acquire=True)
    assert (len(dead.effects), dead.released) == (1, False)
    assert h.store.pending_summary()[0] == 1
    again = h.step("dead-drain", acquire=False)
    assert (again.effects, again.released, again.results) == (dead.effects, False, [])
    assert h.store.client.get(h.store.keys.conv_lease(CONV)) == "dead-drain"

    h.store.client.delete(h.store.keys.conv_lease(CONV))
    assert handlers.redrive(h.deps) == 1
    report = h.drain()

    assert (report.applied, report.effects) == (0, 1)
    assert [d for d, _, _ in h.history()] == ["inbound", "outbound"]
    assert nothing_left(h)


def test_a_drain_whose_lease_was_taken_commits_nothing(make_harness: HarnessFactory) -> None:
    """If another drain owns the lease by commit time (fencing), the reply is not recorded
    by the old one; the record stays for the new owner."""
    steal: list[str] = []

    class StealingExtractor(RuleBasedOrderExtractor):
        async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
            keys = request_store.keys
            request_store.client.set(keys.conv_lease(CONV), "thief")
            steal.append("stolen")
            return await super().extract(request)

    h = make_harness(extractor=StealingExtractor())
    request_store = h.store
    h.accept("3 boxes of apples")

    report = h.drain()

    assert report.outcome == "lease_lost"
    assert steal == ["stolen"]
    assert h.history() == [("inbound", "text", "3 boxes of apples")]
    assert len(h.store.pending_effects(CONV)) == 1
    assert h.session().order_details is None


def test_the_lease_covers_a_slow_calls_whole_budget(make_harness: HarnessFactory) -> None:
    """Before a remote extraction the lease is extended by the extractor's budget, so no
    other drain can take the phone over mid-call; afterwards it is back to normal."""
    seen_ttl: list[int] = []

    @dataclass
    class SlowExtractor:
        name: str = "openai"
        budget_seconds: float = 30.0
        history_limit: int = 5

        async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
            seen_ttl.append(int(h.store.client.pttl(h.store.keys.conv_lease(CONV))))
            return ExtractionResult.nothing()

    h = make_harness(extractor=SlowExtractor(), lease_seconds=1.0)
    h.accept("hello")

    h.drain()

    assert 30_000 < seen_ttl[0] <= 31_000
    assert nothing_left(h)


def test_a_session_ended_before_the_commit_gets_no_reply(make_harness: HarnessFactory) -> None:
    """Completed through the API while the extraction ran: no reply leaves for the customer
    (the status is read again right before the send), nothing is appended to the ended
    session, and the phone is released."""

    class CompletingExtractor(RuleBasedOrderExtractor):
        async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
            h.service.complete_session(h.session().session_id)
            return await super().extract(request)

    sender = FakeSender()
    h = make_harness(extractor=CompletingExtractor(), sender=sender)
    h.accept("3 boxes of apples")

    report = h.drain()

    assert report.outcome == "drained"
    assert sender.sent == []  # the customer is not told an ended session took their order
    assert h.history() == [("inbound", "text", "3 boxes of apples")]
    assert h.session().status.value == "completed"
    assert nothing_left(h)


def test_a_worker_without_effects_drops_leftover_records(
    make_harness: HarnessFactory, redis_client: redis.Redis, clock: FakeClock
) -> None:
    """Effects queued by a worker that had them, found by one that has none: dropped, so
    the conversation is not held forever."""
    h = make_harness()
    h.accept("3 boxes of apples")
    assert len(h.step("dead", acquire=True).effects) == 1
    h.store.client.delete(h.store.keys.conv_lease(CONV))
    plain = WorkerDeps(service=h.service, inbox=h.inbox, wake=lambda conv: None)

    report = handlers.drain_conversation(plain, CONV)

    assert (report.outcome, report.effects) == ("drained", 1)
    assert h.history() == [("inbound", "text", "3 boxes of apples")]
    assert nothing_left(h)


# ---- the 24-hour window --------------------------------------------------------------------


def test_no_reply_outside_the_customer_service_window(make_harness: HarnessFactory) -> None:
    """A message applied more than 24 h after it was accepted: the order is still updated,
    but no free-form reply is sent; a system message says why."""
    sender = FakeSender()
    h = make_harness(sender=sender)
    before = sample("wa_sessions_replies_total", {"sender": "twilio", "outcome": "outside_window"})
    h.accept("3 boxes of apples")
    h.clock.advance(hours=25)

    h.drain()

    assert sender.sent == []
    session = h.session()
    assert session.order_details is not None
    assert session.order_details["items"][0]["name"] == "apples"
    direction, kind, content = h.history()[1]
    assert (direction, kind) == ("outbound", "system")
    assert "24-hour" in content
    assert session.messages[1].metadata["reason"] == "outside_window"
    after = sample("wa_sessions_replies_total", {"sender": "twilio", "outcome": "outside_window"})
    assert after == before + 1


# ---- failures ------------------------------------------------------------------------------


def test_a_twilio_refusal_is_recorded_and_not_retried(make_harness: HarnessFactory) -> None:
    """Twilio answers 400 with 63016: a system message with the code, counted as failed."""
    with fake_twilio() as api:
        api.reply(twilio_error(400, 63016, "Outside the allowed window"))
        sender = twilio_sender(api)
        h = make_harness(sender=sender)
        failed = sample("wa_sessions_replies_total", {"sender": "twilio", "outcome": "failed"})

        h.accept("3 boxes of apples")
        h.drain()

    note = h.session().messages[1]
    assert note.message_type is MessageType.SYSTEM
    assert "63016" in note.content
    assert note.metadata["error_code"] == "63016"
    assert len(api.requests) == 1
    assert sample("wa_sessions_replies_total", {"sender": "twilio", "outcome": "failed"}) == (
        failed + 1
    )


def test_replies_through_the_twilio_sdk_are_recorded_with_their_sid(
    make_harness: HarnessFactory,
) -> None:
    """The real SDK against the fake API: the reply is stored with Twilio's MessageSid."""
    with fake_twilio() as api:
        h = make_harness(sender=twilio_sender(api))
        h.accept("2 x Margherita pizza")
        h.drain()

    reply = h.session().messages[1]
    assert reply.metadata["sender"] == "twilio"
    assert reply.metadata["twilio_sid"].startswith("SM")
    assert api.requests[0].form()["Body"] == "✅ Order received: 2 x Margherita pizza"


def test_an_extractor_that_raises_does_not_wedge_the_phone(make_harness: HarnessFactory) -> None:
    """A bug in an extractor is a recorded failure about that message; the next message of
    the batch still goes through and the batch's reply answers it."""

    class Broken(RuleBasedOrderExtractor):
        async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
            if "boom" in request.message.content:
                raise RuntimeError("bug")
            return await super().extract(request)

    h = make_harness(extractor=Broken())
    h.accept("boom", "3 boxes of apples")

    h.drain()

    kinds = [(d, t) for d, t, _ in h.history()]
    assert kinds == [
        ("inbound", "text"),
        ("inbound", "text"),
        ("outbound", "system"),
        ("outbound", "text"),
    ]
    boom, apples, note, reply = h.session().messages
    assert note.metadata["in_reply_to"] == boom.id
    assert reply.content == "✅ Order received: 3 boxes of apples"
    assert reply.metadata["replies_to"] == [boom.id, apples.id]
    assert nothing_left(h)


def test_an_openai_outage_is_recorded_and_the_next_messages_go_on(
    make_harness: HarnessFactory,
) -> None:
    """OpenAI answers 500 to everything: each message keeps its place and gets a system
    message saying why it was not understood, no reply is sent for a batch of which nothing
    was understood, and the drain moves on after each message's three attempts; once OpenAI
    is back the next message is extracted and answered."""
    found = ExtractionResult(
        found=True,
        changes=[ItemChange(action=ItemAction.ADD, name="Product A", quantity=5, unit="units")],
    )
    with fake_openai(found) as api:
        outage = [Reply(500, {"error": {"message": "down"}}) for _ in range(6)]
        api.reply(*outage)
        policy = RetryPolicy(
            timeout_seconds=0.5, max_retries=2, budget_seconds=2.0, backoff_seconds=0.01
        )
        h = make_harness(extractor=openai_extractor(api, policy))
        failures = sample("wa_sessions_extraction_failures_total", {"reason": "server_error"})
        h.accept("I need 5 units of Product A", "hello?")
        h.drain()
        attempts_during_outage = len(api.requests)
        h.accept("I need 5 units of Product A")
        h.drain()

    # Each failed message took its three attempts (one and two retries) and no more: the
    # drain moved on to the next message, then to the next batch, once OpenAI was back.
    assert attempts_during_outage == 2 * (policy.max_retries + 1)
    assert len(api.requests) == attempts_during_outage + 1
    notes = [c for d, t, c in h.history() if t == "system"]
    assert len(notes) == 2
    assert all("server_error" in note for note in notes)
    assert [(d, t) for d, t, _ in h.history()] == [
        ("inbound", "text"),
        ("inbound", "text"),
        ("outbound", "system"),
        ("outbound", "system"),
        ("inbound", "text"),
        ("outbound", "text"),
    ]
    session = h.session()
    first, second = session.messages[:2]
    assert [m.metadata["in_reply_to"] for m in session.messages[2:4]] == [first.id, second.id]
    assert session.order_details is not None
    assert session.order_details["items"] == [{"name": "Product A", "quantity": 5, "unit": "units"}]
    assert (
        sample("wa_sessions_extraction_failures_total", {"reason": "server_error"}) == failures + 2
    )


def test_a_hung_openai_holds_the_phone_no_longer_than_the_budget(
    make_harness: HarnessFactory,
) -> None:
    """Timeouts (the worst outage): each message of the batch gets no more attempts than its
    retry budget allows and a timeout note, and a message that arrives meanwhile is applied
    right after the batch's notes."""
    with fake_openai() as api:
        api.reply(*[Reply(200, {}, delay=5.0) for _ in range(6)])
        policy = RetryPolicy(timeout_seconds=0.3, max_retries=2, budget_seconds=1.0)
        h = make_harness(extractor=openai_extractor(api, policy))
        h.accept("2 x pizza", "Thanks!")
        drainer = threading.Thread(target=h.drain)
        drainer.start()
        deadline = time.monotonic() + 10
        while not api.requests:  # the first extraction is hanging
            assert time.monotonic() < deadline, "the drain never called OpenAI"
            time.sleep(0.01)
        h.accept("one more")
        drainer.join(timeout=30)
        assert not drainer.is_alive(), "the drain did not finish"

    assert h.store.inbox_depth(CONV) == 0
    # No attempt beyond the retry budget's: at most three per message (the late one included).
    assert len(api.requests) <= 3 * (policy.max_retries + 1)
    messages = h.session().messages
    assert [m.content for m in messages if m.direction.value == "inbound"] == [
        "2 x pizza",
        "Thanks!",
        "one more",
    ]
    notes = [m for m in messages if m.message_type is MessageType.SYSTEM]
    # (The late message may meet the last hung answers too.)
    assert [n.metadata["reason"] for n in notes[:2]] == ["timeout", "timeout"]
    assert [n.metadata["in_reply_to"] for n in notes[:2]] == [messages[0].id, messages[1].id]
    # The message that arrived during the batch waited for the batch's notes, then was applied.
    assert messages[2:4] == notes[:2]
    assert messages[4].content == "one more"


# ---- helpers -------------------------------------------------------------------------------


def twilio_sender(api: FakeTwilio) -> TwilioSender:
    return TwilioSender(
        account_sid=TWILIO_SID,
        auth_token=TWILIO_TOKEN,
        policy=RetryPolicy(timeout_seconds=1, max_retries=2, budget_seconds=3),
        status_callback_url="https://wa.example.test/twilio-status",
        api_base_url=api.base_url,
    )


def openai_extractor(api: FakeOpenAI, policy: RetryPolicy) -> OpenAIOrderExtractor:
    return OpenAIOrderExtractor(
        api_key=OPENAI_KEY, model="gpt-test", base_url=api.api_url, policy=policy
    )
