"""Order extraction and replies run by the per-phone drain on the real Redis: the order and the
reply land in the session, replies follow their messages, a crash between apply and commit is
finished once by the next drain, the 24-hour window is respected and outages are recorded
without holding the phone's next messages beyond the budget.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

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
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest, OrderExtractor
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.orders.openai import OpenAIOrderExtractor
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.replies.sender import LogSender, OutboundSender, SendFailure, SendResult
from wa_sessions.replies.templates import NOTHING_TEMPLATE
from wa_sessions.replies.twilio import TwilioSender
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.inbox import Inbox, InboxPolicy
from wa_sessions.statemachine.models import Message, MessageType, Session
from wa_sessions.statemachine.service import SessionService, new_session_id
from wa_sessions.statemachine.store import IngestOutcome, RedisSessionStore, to_ms
from wa_sessions.workers import handlers
from wa_sessions.workers.handlers import DrainReport, WorkerDeps

BUSINESS = "+14155238886"
PHONE = "+14155550100"
CONV = Conversation(PHONE, BUSINESS).key


@dataclass
class FakeSender:
    """An ``OutboundSender`` that records sends and answers with Twilio-like SIDs."""

    name: str = "twilio"
    budget_seconds: float = 0.0
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    fail_with: SendFailure | None = None

    def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
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


HarnessFactory = Callable[..., Harness]


@pytest.fixture
def make_harness(redis_client: redis.Redis, clock: FakeClock) -> HarnessFactory:
    def make(
        *,
        extractor: OrderExtractor | None = None,
        sender: OutboundSender | None = None,
        lease_seconds: float = 5.0,
    ) -> Harness:
        service = SessionService(redis_client, clock=clock, session_timeout_hours=48.0)
        inbox = Inbox(service.store, InboxPolicy(lease_seconds=lease_seconds))
        woken: list[str] = []
        deps = WorkerDeps(
            service=service,
            inbox=inbox,
            wake=woken.append,
            lease_seconds=lease_seconds,
            extractor=extractor or RuleBasedOrderExtractor(),
            sender=sender or LogSender(),
        )
        return Harness(service, inbox, deps, clock, woken)

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


def test_follow_up_messages_change_and_remove_items(h: Harness) -> None:
    """ "make that 6" changes the item discussed last; "remove the apples" drops one."""
    h.accept("I need 5 units of Product A", "3 boxes of apples", "make that 6", "remove the apples")
    h.drain()

    session = h.session()
    assert session.order_details is not None
    assert session.order_details["items"] == [{"name": "Product A", "quantity": 5, "unit": "units"}]
    replies = [c for d, t, c in h.history() if d == "outbound"]
    assert replies == [
        "✅ Order received: 5 units of Product A",
        "✅ Order received: 5 units of Product A, 3 boxes of apples",
        "✅ Order received: 5 units of Product A, 6 boxes of apples",
        "✅ Order received: 5 units of Product A",
    ]


def test_replies_follow_their_own_message_when_several_wait(h: Harness) -> None:
    """Messages queued together are answered one by one: in, out, in, out."""
    h.accept("2 x Margherita pizza", "Thanks!")
    h.drain()

    assert [(d, c) for d, _, c in h.history()] == [
        ("inbound", "2 x Margherita pizza"),
        ("outbound", "✅ Order received: 2 x Margherita pizza"),
        ("inbound", "Thanks!"),
        ("outbound", NOTHING_TEMPLATE),
    ]
    session = h.session()
    assert session.order_details is not None
    assert [i["name"] for i in session.order_details["items"]] == ["Margherita pizza"]


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
    """Only inbound text and image messages are extracted and answered."""
    message = Message(
        id="SM" + uuid.uuid4().hex,
        content="",
        message_type=MessageType.LOCATION,
        timestamp=h.clock(),
        metadata={"location": {"latitude": 1.0, "longitude": 2.0}},
    )
    h.inbox.accept(CONV, message, accepted_ms=to_ms(h.clock()))
    report = h.drain()

    assert (report.applied, report.effects) == (1, 0)
    assert h.history() == [("inbound", "location", "")]


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
    work = h.store.acquire_work(CONV, "dead-drain", lease_ms=h.deps.lease_ms, batch=10)
    assert work is not None
    service = h.service
    [applied] = h.store.apply_entries(
        CONV,
        "dead-drain",
        work.entries,
        now_ms=service.now_ms(),
        new_session_ids=[new_session_id()],
        timeout_ms=service.timeout_ms,
        cap=service.max_messages_per_session,
        keep_ms=service.keep_ms,
        lease_ms=h.deps.lease_ms,
        effects=True,
    )
    assert applied.effect
    assert not applied.released
    h.accept("Thanks!")  # arrives while the effects are still pending

    lease = h.store.keys.conv_lease(CONV)
    deadline = time.monotonic() + 5
    while h.store.client.exists(lease):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert h.store.pending_effects(CONV) == [applied.effect]
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


def test_pending_effects_alone_keep_the_phone_pending_and_are_redriven(
    make_harness: HarnessFactory,
) -> None:
    """With the inbox empty but effects uncommitted, the phone is neither released nor
    forgotten: it stays in the pending index, the re-drive pass wakes it, a drain commits."""
    h = make_harness(lease_seconds=0.2)
    h.accept("2 x Margherita pizza")
    work = h.store.acquire_work(CONV, "dead-drain", lease_ms=h.deps.lease_ms, batch=10)
    assert work is not None
    service = h.service
    [applied] = h.store.apply_entries(
        CONV,
        "dead-drain",
        work.entries,
        now_ms=service.now_ms(),
        new_session_ids=[new_session_id()],
        timeout_ms=service.timeout_ms,
        cap=service.max_messages_per_session,
        keep_ms=service.keep_ms,
        lease_ms=h.deps.lease_ms,
        effects=True,
    )
    assert (applied.remaining, applied.released) == (0, False)
    assert h.store.pending_summary()[0] == 1
    assert h.store.release_or_next(CONV, "dead-drain", lease_ms=200, batch=10) == []
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
        def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
            keys = request_store.keys
            request_store.client.set(keys.conv_lease(CONV), "thief")
            steal.append("stolen")
            return super().extract(request)

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

        def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
            seen_ttl.append(int(h.store.client.pttl(h.store.keys.conv_lease(CONV))))
            return ExtractionResult.nothing()

    h = make_harness(extractor=SlowExtractor(), lease_seconds=1.0)
    h.accept("hello")

    h.drain()

    assert 30_000 < seen_ttl[0] <= 31_000
    assert nothing_left(h)


def test_a_session_ended_before_the_commit_gets_no_reply(make_harness: HarnessFactory) -> None:
    """Completed through the API while the extraction ran: the effects are dropped, not
    appended to an ended session, and the phone is released."""

    class CompletingExtractor(RuleBasedOrderExtractor):
        def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
            h.service.complete_session(h.session().session_id)
            return super().extract(request)

    sender = FakeSender()
    h = make_harness(extractor=CompletingExtractor(), sender=sender)
    h.accept("3 boxes of apples")

    report = h.drain()

    assert report.outcome == "drained"
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
    work = h.store.acquire_work(CONV, "dead", lease_ms=5000, batch=10)
    assert work is not None
    service = h.service
    h.store.apply_entries(
        CONV,
        "dead",
        work.entries,
        now_ms=service.now_ms(),
        new_session_ids=[new_session_id()],
        timeout_ms=service.timeout_ms,
        cap=service.max_messages_per_session,
        keep_ms=service.keep_ms,
        lease_ms=5000,
        effects=True,
    )
    h.store.client.delete(h.store.keys.conv_lease(CONV))
    plain = WorkerDeps(service=service, inbox=h.inbox, wake=lambda conv: None)

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
    """A bug in an extractor is a recorded failure; the next message still goes through."""

    class Broken(RuleBasedOrderExtractor):
        def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
            if "boom" in request.message.content:
                raise RuntimeError("bug")
            return super().extract(request)

    h = make_harness(extractor=Broken())
    h.accept("boom", "3 boxes of apples")

    h.drain()

    kinds = [(d, t) for d, t, _ in h.history()]
    assert kinds == [
        ("inbound", "text"),
        ("outbound", "system"),
        ("inbound", "text"),
        ("outbound", "text"),
    ]
    assert nothing_left(h)


def test_an_openai_outage_is_recorded_and_the_next_messages_go_on(
    make_harness: HarnessFactory,
) -> None:
    """OpenAI answers 500 to everything: each message keeps its place, gets a system message
    saying why there is no reply, and the drain moves on within the retry budget; once
    OpenAI is back the next message is extracted."""
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
        started = time.monotonic()

        h.drain()
        during = time.monotonic() - started
        h.accept("I need 5 units of Product A")
        h.drain()

    assert during < 2 * policy.budget_seconds
    notes = [c for d, t, c in h.history() if t == "system"]
    assert len(notes) == 2
    assert all("server_error" in note for note in notes)
    assert [(d, t) for d, t, _ in h.history()] == [
        ("inbound", "text"),
        ("outbound", "system"),
        ("inbound", "text"),
        ("outbound", "system"),
        ("inbound", "text"),
        ("outbound", "text"),
    ]
    session = h.session()
    assert session.order_details is not None
    assert session.order_details["items"] == [{"name": "Product A", "quantity": 5, "unit": "units"}]
    assert (
        sample("wa_sessions_extraction_failures_total", {"reason": "server_error"}) == failures + 2
    )


def test_a_hung_openai_holds_the_phone_no_longer_than_the_budget(
    make_harness: HarnessFactory,
) -> None:
    """Timeouts (the worst outage): each message costs at most the budget, and a message
    queued behind it is applied right after."""
    with fake_openai() as api:
        api.reply(*[Reply(200, {}, delay=5.0) for _ in range(3)])
        policy = RetryPolicy(timeout_seconds=0.3, max_retries=2, budget_seconds=1.0)
        h = make_harness(extractor=openai_extractor(api, policy))
        h.accept("2 x pizza")
        applied_at: list[float] = []
        started = time.monotonic()

        def watch() -> None:
            while len(h.store.conversation_session_ids(CONV)) == 0 or h.store.inbox_depth(CONV):
                time.sleep(0.01)
            applied_at.append(time.monotonic() - started)

        h.accept("Thanks!")
        watcher = threading.Thread(target=watch)
        watcher.start()
        h.drain()
        watcher.join(timeout=5)

    assert applied_at
    assert applied_at[0] < policy.budget_seconds + 0.5
    note = h.session().messages[1]
    assert note.metadata["reason"] == "timeout"


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
