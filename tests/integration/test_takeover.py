"""Agent takeover on the real Redis and the real drain: an operator takes a session over (no
automatic reply or extraction while they hold it, the customer's messages still land in order),
replies through the phone's drain (in order, recorded with their name, tracked by status
callbacks, refused outside the 24-hour window) and hands it back (automatic replies resume for
later messages); over the session API too, and a drain killed mid-reply stores it once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.conftest import FakeClock
from tests.integration.test_effects import CONV, FakeSender, Harness, build_harness
from tests.integration.test_webhook import make_settings, wake_messages
from wa_sessions.errors import OutsideWindow, TakeoverConflict
from wa_sessions.statemachine.redis.delivery import AsyncDeliveryStatuses
from wa_sessions.statemachine.redis.inbox import AsyncInbox, InboxPolicy
from wa_sessions.statemachine.takeover import TakeoverService
from wa_sessions.webhook import WebDeps, create_app

ADMIN = {"Authorization": "Bearer admin"}
ORDER = "I need 5 units of Product A"
ORDER_REPLY = "✅ Order received: 5 units of Product A"


class Desk:
    """The harness of ``test_effects`` (real Redis, real drain, a FakeSender) with the
    operators' service beside it."""

    def __init__(self, h: Harness, sender: FakeSender) -> None:
        self.h = h
        self.sender = sender
        self.takeover = TakeoverService(
            h.service, wake_message=None, wake_ttl_ms=h.inbox.policy.wake_ttl_ms
        )

    def session_id(self) -> str:
        return self.h.session().session_id

    def held_by_alice(self) -> str:
        """A session opened by "hello" (answered automatically), then taken over by alice."""
        self.h.accept("hello")
        self.h.drain()
        sid = self.session_id()
        self.takeover.take_over(sid, "alice")
        return sid

    def bodies(self) -> list[str]:
        return [body for _, _, body in self.sender.sent]


def make_desk(redis_client: redis.Redis, clock: FakeClock, lease_seconds: float = 5.0) -> Desk:
    sender = FakeSender()
    return Desk(
        build_harness(redis_client, clock, sender=sender, lease_seconds=lease_seconds), sender
    )


@pytest.fixture
def desk(redis_client: redis.Redis, clock: FakeClock) -> Iterator[Desk]:
    made = make_desk(redis_client, clock)
    yield made
    made.h.deps.close()


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# ---- takeover ------------------------------------------------------------------------------


def test_a_taken_over_session_gets_no_automatic_reply_while_its_messages_land_in_order(
    desk: Desk,
) -> None:
    """After the takeover the customer's messages are stored in order, with no automatic
    reply and no order extraction; the session shows who holds it."""
    h = desk.h
    h.accept("hello")
    h.drain()
    sid = desk.session_id()
    held = desk.takeover.take_over(sid, "alice")
    assert (held.taken_over_by, held.taken_over_at) == ("alice", h.clock())

    h.accept(ORDER, "and 3 boxes of apples")
    h.drain()

    assert [(d, c) for d, _, c in h.history()][1:] == [
        ("outbound", desk.bodies()[0]),
        ("inbound", ORDER),
        ("inbound", "and 3 boxes of apples"),
    ]
    assert len(desk.sender.sent) == 1  # the reply to "hello" only
    assert h.session().order_details is None
    assert h.store.pending_effects(CONV) == []


def test_a_second_operator_can_neither_take_over_nor_reply(desk: Desk) -> None:
    """Two operators never both hold a session: the second is refused, naming the holder."""
    sid = desk.held_by_alice()
    assert desk.takeover.take_over(sid, "alice").taken_over_by == "alice"  # again: no change

    with pytest.raises(TakeoverConflict, match="taken over by alice"):
        desk.takeover.take_over(sid, "bob")
    with pytest.raises(TakeoverConflict, match="taken over by alice"):
        desk.takeover.send_operator_reply(sid, "bob", "hi, Bob here")
    with pytest.raises(TakeoverConflict, match="taken over by alice"):
        desk.takeover.hand_back(sid, "bob")
    assert desk.takeover.hand_back(sid, "bob", force=True).taken_over_by is None


def test_a_takeover_while_an_extraction_runs_stops_its_automatic_reply(desk: Desk) -> None:
    """The takeover is read again right before the send: a reply whose extraction was in
    flight when the operator took over is not sent, and a note says why."""
    h = desk.h
    h.accept(ORDER)
    step = h.step("drain", acquire=True)
    assert len(step.effects) == 1
    desk.takeover.take_over(desk.session_id(), "alice")

    batch = h.run_effects(step, "drain", lease_seconds=5.0)
    assert batch is not None
    h.step("drain", acquire=False, commit=batch.commit)

    assert desk.sender.sent == []
    note = h.session().messages[-1]
    assert note.message_type.value == "system"
    assert note.metadata["reason"] == "taken_over"
    assert "alice took the conversation over" in note.content


def test_hand_back_resumes_automatic_replies_for_messages_after_it(desk: Desk) -> None:
    """A message accepted while the session was held gets no automatic reply even when it is
    applied after the hand-back; one accepted after the hand-back does."""
    h = desk.h
    sid = desk.held_by_alice()
    h.clock.advance(seconds=1)
    h.accept("are you there?")  # waits in the inbox across the hand-back
    h.clock.advance(seconds=1)
    assert desk.takeover.hand_back(sid, "alice").taken_over_by is None
    h.clock.advance(seconds=1)
    h.accept(ORDER)
    h.drain()

    assert [c for _, _, c in h.history()] == [
        "hello",
        desk.bodies()[0],
        "are you there?",
        ORDER,
        ORDER_REPLY,
    ]
    with pytest.raises(TakeoverConflict, match="not taken over"):
        desk.takeover.hand_back(sid, "alice")


def test_an_ended_session_leaves_the_takeover_gauge(desk: Desk) -> None:
    """The gauge counts live sessions held by an operator; completing one releases it."""
    desk.h.accept("hello")
    desk.h.drain()
    sid = desk.session_id()
    store = desk.h.store
    desk.takeover.take_over(sid, "alice")
    assert store.count_taken_over() == 1
    desk.h.service.complete_session(sid)
    assert store.count_taken_over() == 0
    assert desk.h.session().taken_over_by is None


# ---- operator replies ----------------------------------------------------------------------


def test_an_operator_reply_is_sent_in_order_with_the_operator_name_and_tracked(
    desk: Desk, redis_url: str
) -> None:
    """The reply leaves through the drain between the messages accepted around it, is stored
    as outbound with ``metadata.operator`` and mapped to its MessageSid, and a status
    callback moves its delivery status forward."""
    h = desk.h
    sid = desk.held_by_alice()
    sent_before = sample("wa_sessions_operator_replies_total", {"outcome": "sent"})
    h.accept("I'd like to change my order")
    queued = desk.takeover.send_operator_reply(sid, "alice", "Sure, what would you like?")
    h.accept("two more, please")
    h.drain()

    contents = [(d, c) for d, _, c in h.history()][2:]
    assert contents == [
        ("inbound", "I'd like to change my order"),
        ("outbound", "Sure, what would you like?"),
        ("inbound", "two more, please"),
    ]
    assert desk.bodies()[1:] == ["Sure, what would you like?"]
    reply = h.session().messages[3]
    assert reply.metadata["operator"] == "alice"
    twilio_sid = reply.metadata["twilio_sid"]
    assert reply.id == twilio_sid != queued.reply_id
    assert h.store.outbound(twilio_sid)["sess"] == sid
    assert sample("wa_sessions_operator_replies_total", {"outcome": "sent"}) == sent_before + 1

    async def callback() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        statuses = AsyncDeliveryStatuses(client, h.store.keys)
        await statuses.record(twilio_sid, "delivered", "", at=h.clock())
        await client.aclose()

    asyncio.run(callback())
    assert h.session().messages[3].metadata["delivery_status"] == "delivered"


def test_a_reply_outside_the_window_is_refused_with_a_clear_message(desk: Desk) -> None:
    """25 hours after the customer's last message the API refuses the reply up front."""
    sid = desk.held_by_alice()
    desk.h.clock.advance(hours=25)
    with pytest.raises(OutsideWindow, match="24-hour customer-service window closed at"):
        desk.takeover.send_operator_reply(sid, "alice", "Still there?")
    assert desk.h.store.inbox_depth(CONV) == 0


def test_a_reply_whose_window_closed_while_it_waited_becomes_a_note(desk: Desk) -> None:
    """The drain checks the window again: a reply that waited past it is not sent, and the
    conversation says why."""
    h = desk.h
    sid = desk.held_by_alice()
    desk.takeover.send_operator_reply(sid, "alice", "One moment")
    h.clock.advance(hours=25)
    h.drain()

    assert len(desk.sender.sent) == 1
    note = h.session().messages[-1]
    assert (note.message_type.value, note.metadata["reason"]) == ("system", "outside_window")
    assert note.content.startswith("Reply from alice not sent: WhatsApp's 24-hour")


def test_a_reply_handed_back_before_it_left_is_not_sent(desk: Desk) -> None:
    """The drain checks the holder again: a reply queued before its operator handed the
    session back is not sent."""
    h = desk.h
    sid = desk.held_by_alice()
    desk.takeover.send_operator_reply(sid, "alice", "One moment")
    desk.takeover.hand_back(sid, "alice")
    h.drain()

    assert len(desk.sender.sent) == 1
    assert h.session().messages[-1].metadata["reason"] == "not_taken_over"


def test_a_drain_killed_after_sending_an_operator_reply_stores_it_once(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    """A drain that sent the operator's reply and died before its commit: the next drain
    sends it again (at least once, as Twilio has no idempotency key) and stores it once."""
    desk = make_desk(redis_client, clock, lease_seconds=0.2)
    h = desk.h
    try:
        sid = desk.held_by_alice()
        desk.takeover.send_operator_reply(sid, "alice", "Your order ships today")
        dead = h.step("dead-drain", acquire=True)
        assert len(dead.effects) == 1
        assert h.run_effects(dead, "dead-drain", lease_seconds=0.2) is not None
        h.wait_for_lease_to_lapse()
        h.drain()

        assert desk.bodies()[1:] == ["Your order ships today"] * 2
        replies = [m for m in h.session().messages if m.metadata.get("operator") == "alice"]
        assert [m.content for m in replies] == ["Your order ships today"]
        assert h.store.pending_effects(CONV) == []
    finally:
        h.deps.close()


# ---- the session API -----------------------------------------------------------------------


@pytest.fixture
def api(desk: Desk, redis_url: str) -> Iterator[TestClient]:
    inbox = AsyncInbox(
        redis.asyncio.Redis.from_url(redis_url),
        desk.h.service.store.keys,
        InboxPolicy(),
        wake_message=wake_messages(),
    )
    deps = WebDeps(settings=make_settings(), service=desk.h.service, inbox=inbox)
    with TestClient(create_app(deps)) as client:
        yield client


def test_the_session_api_takes_over_replies_and_hands_back(desk: Desk, api: TestClient) -> None:
    """The three routes over HTTP; the session views show who holds the session."""
    desk.h.accept("hello")
    desk.h.drain()
    sid = desk.session_id()
    taken = api.post(f"/sessions/{sid}/takeover", json={"operator": "alice"}, headers=ADMIN)
    assert taken.status_code == 200
    assert taken.json()["session"]["taken_over_by"] == "alice"
    listed = api.get("/sessions/active", headers=ADMIN).json()["active_sessions"][0]
    assert listed["taken_over_by"] == "alice"

    queued = api.post(
        f"/sessions/{sid}/reply", json={"operator": "alice", "text": "Hi!"}, headers=ADMIN
    )
    assert queued.status_code == 202
    assert queued.json()["reply_id"].startswith("op-")
    desk.h.drain()
    assert desk.bodies()[-1] == "Hi!"

    back = api.post(f"/sessions/{sid}/handback", json={"operator": "alice"}, headers=ADMIN)
    assert back.status_code == 200
    assert back.json()["session"]["taken_over_by"] is None


def test_the_session_api_refuses_bad_replies_with_clear_errors(desk: Desk, api: TestClient) -> None:
    """404 unknown, 400 empty or too long text or a bad operator name, 409 when not held by
    that operator or outside the window; each a JSON body naming the problem, counted."""
    desk.h.accept("hello")
    desk.h.drain()
    sid = desk.session_id()
    unknown = "00000000-0000-4000-8000-000000000000"

    def reply(session: str, operator: str, text: str) -> tuple[int, str, str]:
        response = api.post(
            f"/sessions/{session}/reply",
            json={"operator": operator, "text": text},
            headers=ADMIN,
        )
        error = response.json()["error"]
        return response.status_code, error["code"], error["message"]

    conflicts = sample("wa_sessions_api_errors_total", {"code": "takeover_conflict"})
    assert reply(unknown, "alice", "hi")[:2] == (404, "session_not_found")
    assert reply(sid, "alice", "hi") == (
        409,
        "takeover_conflict",
        f"session {sid} is not taken over; take it over before replying",
    )
    assert sample("wa_sessions_api_errors_total", {"code": "takeover_conflict"}) == conflicts + 1
    api.post(f"/sessions/{sid}/takeover", json={"operator": "alice"}, headers=ADMIN)
    assert reply(sid, "alice", "   ") == (400, "bad_request", "text: the reply is empty")
    assert reply(sid, "alice", "x" * 1601)[:2] == (400, "bad_request")
    assert reply(sid, "al ice", "hi")[:2] == (400, "bad_request")
    missing = api.post(f"/sessions/{sid}/reply", json={"operator": "alice"}, headers=ADMIN)
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "bad_request")
    desk.h.clock.advance(hours=25)
    status, code, message = reply(sid, "alice", "hi")
    assert (status, code) == (409, "outside_window")
    assert "24-hour customer-service window closed" in message
    assert desk.h.store.inbox_depth(CONV) == 0
