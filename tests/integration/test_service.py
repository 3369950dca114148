"""SessionService against a real Redis: lifecycle, context, summaries, caps, sweeps and listings.

Time is a FakeClock moved by hand; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis

from wa_sessions.errors import (
    InvalidPhoneNumber,
    InvalidTransition,
    SessionAlreadyActive,
    SessionNotFound,
)
from wa_sessions.statemachine import (
    MessageDirection,
    MessageType,
    SessionCreate,
    SessionService,
    SessionStatus,
    SessionUpdate,
)
from wa_sessions.statemachine.redis.keys import Keys

PHONE = "+14155550123"
OTHER = "+442079460958"
BUSINESS = "+14155238886"
BSUID = "US.13491208655302741918"
KEYS = Keys()

IN = MessageDirection.INBOUND
OUT = MessageDirection.OUTBOUND

MakeService = Callable[..., SessionService]


@pytest.fixture
def make_service(redis_client: redis.Redis, clock: Any) -> MakeService:
    """Builds a service on the test Redis and the shared FakeClock, with overridable policy."""

    def make(**overrides: Any) -> SessionService:
        options: dict[str, Any] = {"clock": clock, "business_number": BUSINESS}
        options.update(overrides)
        return SessionService(redis_client, **options)

    return make


@pytest.fixture
def service(make_service: MakeService) -> SessionService:
    return make_service()


def conv(phone: str = PHONE, business: str = BUSINESS) -> str:
    return f"{phone}|{business}"


# ---- opening and continuing sessions ------------------------------------------------------


def test_first_message_opens_an_active_session(service: SessionService, clock: Any) -> None:
    """A phone with no session gets a new active one holding the message."""
    session = service.add_message(PHONE, "hello")
    assert session.status is SessionStatus.ACTIVE
    assert session.phone_number == PHONE
    assert session.business_number == BUSINESS
    assert session.created_at == clock.now
    assert session.message_count == 1
    assert [m.content for m in service.get_conversation_history(PHONE)] == ["hello"]


def test_messages_within_timeout_continue_the_same_session(
    service: SessionService, clock: Any
) -> None:
    """Messages less than the timeout apart stay in one session, even over several days."""
    first = service.add_message(PHONE, "one")
    for i in range(3):
        clock.advance(hours=23, minutes=59)
        session = service.add_message(PHONE, f"later {i}")
        assert session.session_id == first.session_id
    assert session.message_count == 4


def test_phone_spellings_share_one_session(service: SessionService) -> None:
    """whatsapp:-prefixed and spaced spellings of one number continue the same session."""
    a = service.add_message("whatsapp:+14155550123", "one")
    b = service.add_message("+1 415 555 0123", "two")
    assert a.session_id == b.session_id
    assert b.phone_number == PHONE


def test_message_after_completion_opens_new_session(service: SessionService) -> None:
    """Once a session is completed, the phone's next message starts a fresh session."""
    first = service.add_message(PHONE, "order please")
    completed = service.complete_session(first.session_id)
    assert completed.status is SessionStatus.COMPLETED

    second = service.add_message(PHONE, "one more thing")

    assert second.session_id != first.session_id
    assert second.status is SessionStatus.ACTIVE
    assert second.message_count == 1
    old = service.get_session_by_id(first.session_id)
    assert old is not None
    assert old.status is SessionStatus.COMPLETED
    assert [m.content for m in old.messages] == ["order please"]
    assert [m.content for m in service.get_conversation_history(PHONE)] == ["one more thing"]


def test_message_after_timeout_opens_new_session_and_expires_old(
    service: SessionService, clock: Any
) -> None:
    """A message 24 h after the last one opens a new session; the old one is expired."""
    first = service.add_message(PHONE, "hi")
    clock.advance(hours=24)

    second = service.add_message(PHONE, "back again")

    assert second.session_id != first.session_id
    assert second.status is SessionStatus.ACTIVE
    old = service.store.load(first.session_id)
    assert old is not None
    assert old.status is SessionStatus.EXPIRED
    assert old.end_reason == "timeout"
    assert old.ended_at == clock.now
    assert [m.content for m in old.messages] == ["hi"]
    assert service.get_active_sessions_count() == 1


def test_get_session_by_phone_never_returns_a_session_idle_past_timeout(
    service: SessionService, clock: Any
) -> None:
    """Just before the timeout the session is returned; at the timeout it is expired, not shown."""
    session = service.add_message(PHONE, "hi")
    clock.advance(hours=23, minutes=59, seconds=59)
    still = service.get_session_by_phone(PHONE)
    assert still is not None
    assert still.session_id == session.session_id

    clock.advance(seconds=1)

    assert service.get_session_by_phone(PHONE) is None
    stored = service.store.load(session.session_id)
    assert stored is not None
    assert stored.status is SessionStatus.EXPIRED
    assert service.get_active_sessions_count() == 0
    latest = service.get_latest_session_by_phone(PHONE)
    assert latest is not None
    assert latest.session_id == session.session_id
    assert latest.status is SessionStatus.EXPIRED


def test_get_session_by_id_expires_an_idle_session_on_read(
    service: SessionService, clock: Any
) -> None:
    """Reading an idle session by id shows it expired, never active."""
    session = service.add_message(PHONE, "hi")
    clock.advance(hours=25)
    read = service.get_session_by_id(session.session_id)
    assert read is not None
    assert read.status is SessionStatus.EXPIRED


def test_session_timeout_is_configurable(make_service: MakeService, clock: Any) -> None:
    """session_timeout_hours sets the idle limit."""
    service = make_service(session_timeout_hours=1)
    first = service.add_message(PHONE, "hi")
    clock.advance(minutes=59)
    assert service.add_message(PHONE, "still here").session_id == first.session_id
    clock.advance(minutes=60)
    assert service.add_message(PHONE, "new").session_id != first.session_id


def test_carry_over_context_keys_are_copied_into_the_next_session(
    make_service: MakeService,
) -> None:
    """Only the configured context keys follow the customer into their next session."""
    service = make_service(carry_over_context_keys=["language", "customer_name"])
    first = service.add_message(PHONE, "hola")
    service.update_session(
        first.session_id,
        SessionUpdate(
            context={"language": "es", "customer_name": "Ana", "cart": ["x"]},
            order_details={"items": 1},
        ),
    )
    service.complete_session(first.session_id)

    second = service.add_message(PHONE, "otra vez")

    assert second.session_id != first.session_id
    assert second.context == {"language": "es", "customer_name": "Ana"}
    assert second.order_details is None


def test_without_carry_over_keys_a_new_session_starts_with_empty_context(
    service: SessionService,
) -> None:
    """By default nothing is carried over between sessions."""
    first = service.add_message(PHONE, "hi")
    service.update_session(first.session_id, SessionUpdate(context={"language": "es"}))
    service.complete_session(first.session_id)
    assert service.add_message(PHONE, "again").context == {}


# ---- create_session ---------------------------------------------------------------------


def test_create_session_stores_initial_message_and_context(
    service: SessionService, clock: Any
) -> None:
    """create_session keeps the initial message as inbound and the given context."""
    session = service.create_session(
        SessionCreate(phone_number=PHONE, initial_message="hi", context={"tier": "gold"})
    )
    assert session.context == {"tier": "gold"}
    assert session.message_count == 1
    assert session.last_inbound_at == clock.now
    assert session.messages[0].direction is IN


def test_create_session_on_phone_with_active_session_raises_session_already_active(
    service: SessionService,
) -> None:
    """A second create_session names the live session and leaves it alone."""
    live = service.add_message(PHONE, "hi")
    with pytest.raises(SessionAlreadyActive) as info:
        service.create_session(SessionCreate(phone_number=PHONE, initial_message="again"))
    assert info.value.session_id == live.session_id
    assert live.session_id in str(info.value)
    stored = service.get_session_by_phone(PHONE)
    assert stored is not None
    assert stored.session_id == live.session_id
    assert stored.message_count == 1
    assert service.get_active_sessions_count() == 1


def test_create_session_after_timeout_replaces_the_idle_session(
    service: SessionService, clock: Any
) -> None:
    """create_session on a phone whose session went idle expires that one and opens another."""
    idle = service.add_message(PHONE, "hi")
    clock.advance(hours=30)
    fresh = service.create_session(SessionCreate(phone_number=PHONE))
    assert fresh.session_id != idle.session_id
    old = service.store.load(idle.session_id)
    assert old is not None
    assert old.status is SessionStatus.EXPIRED


def test_create_session_rejects_an_invalid_phone(service: SessionService) -> None:
    """An address that is not a phone number nor a BSUID never reaches Redis."""
    with pytest.raises(InvalidPhoneNumber):
        service.create_session(SessionCreate(phone_number="not a phone"))
    assert service.get_all_sessions().total == 0


# ---- ending sessions ------------------------------------------------------------------


@pytest.mark.parametrize("end", ["complete_session", "expire_session"])
def test_ending_an_unknown_session_raises_session_not_found(
    service: SessionService, end: str
) -> None:
    """complete_session and expire_session on an id that was never stored say so."""
    with pytest.raises(SessionNotFound):
        getattr(service, end)("no-such-session")


@pytest.mark.parametrize(
    ("first", "second", "state", "trigger"),
    [
        ("complete_session", "complete_session", "completed", "complete"),
        ("complete_session", "expire_session", "completed", "expire"),
        ("expire_session", "complete_session", "expired", "complete"),
        ("expire_session", "expire_session", "expired", "expire"),
    ],
)
def test_ending_an_ended_session_raises_invalid_transition(
    service: SessionService, first: str, second: str, state: str, trigger: str
) -> None:
    """Completing or expiring twice is refused, naming the session, its state and the trigger."""
    session = service.add_message(PHONE, "hi")
    getattr(service, first)(session.session_id)
    before = service.store.load(session.session_id)

    with pytest.raises(InvalidTransition) as info:
        getattr(service, second)(session.session_id)

    assert (info.value.session_id, info.value.state, info.value.trigger) == (
        session.session_id,
        state,
        trigger,
    )
    assert service.store.load(session.session_id) == before


def test_completing_records_end_time_and_reason_and_leaves_the_active_index(
    service: SessionService, redis_client: redis.Redis, clock: Any
) -> None:
    """A completed session has ended_at and end_reason, and is off the active indexes."""
    session = service.add_message(PHONE, "hi")
    clock.advance(minutes=5)
    done = service.complete_session(session.session_id, reason="order placed")
    assert done.ended_at == clock.now
    assert done.end_reason == "order placed"
    assert redis_client.zscore(KEYS.active, session.session_id) is None
    assert redis_client.get(KEYS.conv_active(conv())) is None
    assert redis_client.zscore(KEYS.status_index("completed"), session.session_id) is not None
    assert service.get_session_by_phone(PHONE) is None


def test_completing_a_session_idle_past_timeout_is_refused_as_expired(
    service: SessionService, clock: Any
) -> None:
    """A session idle past the timeout is expired whether or not a read saw it first."""
    session = service.add_message(PHONE, "hi")
    clock.advance(hours=25)

    with pytest.raises(InvalidTransition) as info:
        service.complete_session(session.session_id)

    assert info.value.state == "expired"
    stored = service.store.load(session.session_id)
    assert stored is not None
    assert stored.status is SessionStatus.EXPIRED
    assert stored.end_reason == "timeout"


# ---- update_session ------------------------------------------------------------------


def test_update_session_merges_context_and_none_deletes_a_key(service: SessionService) -> None:
    """Context keys are merged into the stored ones; a None value removes its key."""
    session = service.create_session(
        SessionCreate(phone_number=PHONE, context={"a": 1, "b": {"nested": [1, 2]}, "c": "x"})
    )
    updated = service.update_session(
        session.session_id, SessionUpdate(context={"b": None, "c": "y", "d": [True, None]})
    )
    assert updated.context == {"a": 1, "c": "y", "d": [True, None]}
    reread = service.get_session_by_id(session.session_id)
    assert reread is not None
    assert reread.context == {"a": 1, "c": "y", "d": [True, None]}


def test_update_session_deleting_a_missing_key_is_harmless(service: SessionService) -> None:
    """Deleting a context key that is not there changes nothing else."""
    session = service.create_session(SessionCreate(phone_number=PHONE, context={"a": 1}))
    updated = service.update_session(session.session_id, SessionUpdate(context={"zzz": None}))
    assert updated.context == {"a": 1}


def test_update_session_replaces_order_details(service: SessionService) -> None:
    """order_details are replaced wholesale, not merged."""
    session = service.add_message(PHONE, "I need 5 units of Product A")
    service.update_session(
        session.session_id,
        SessionUpdate(order_details={"items": [{"name": "A", "quantity": 5}], "total": 10}),
    )
    updated = service.update_session(
        session.session_id, SessionUpdate(order_details={"items": [{"name": "B"}]})
    )
    assert updated.order_details == {"items": [{"name": "B"}]}
    assert updated.status is SessionStatus.ACTIVE


def test_update_session_status_completed_fires_the_complete_trigger(
    service: SessionService, redis_client: redis.Redis, clock: Any
) -> None:
    """status=completed ends the session as complete_session would, after applying the rest."""
    session = service.add_message(PHONE, "hi")
    clock.advance(minutes=1)
    updated = service.update_session(
        session.session_id,
        SessionUpdate(status=SessionStatus.COMPLETED, order_details={"total": 3}),
    )
    assert updated.status is SessionStatus.COMPLETED
    assert updated.ended_at == clock.now
    assert updated.order_details == {"total": 3}
    assert redis_client.zscore(KEYS.active, session.session_id) is None
    assert service.get_session_by_phone(PHONE) is None
    assert service.add_message(PHONE, "new").session_id != session.session_id


def test_update_session_status_expired_fires_the_expire_trigger(service: SessionService) -> None:
    """status=expired ends the session as expired."""
    session = service.add_message(PHONE, "hi")
    updated = service.update_session(
        session.session_id, SessionUpdate(status=SessionStatus.EXPIRED)
    )
    assert updated.status is SessionStatus.EXPIRED


def test_update_session_cannot_reactivate_an_ended_session(service: SessionService) -> None:
    """status=active on a completed session raises InvalidTransition and changes nothing."""
    session = service.add_message(PHONE, "hi")
    service.complete_session(session.session_id)
    with pytest.raises(InvalidTransition):
        service.update_session(session.session_id, SessionUpdate(status=SessionStatus.ACTIVE))
    stored = service.get_session_by_id(session.session_id)
    assert stored is not None
    assert stored.status is SessionStatus.COMPLETED


def test_update_session_on_unknown_id_raises_session_not_found(service: SessionService) -> None:
    """Updating an id that was never stored does not create a stray hash."""
    with pytest.raises(SessionNotFound):
        service.update_session("ghost", SessionUpdate(context={"a": 1}))
    assert service.store.load("ghost") is None


# ---- summaries and the customer-service window ---------------------------------------------


def test_summary_counts_messages_by_direction_and_type(service: SessionService, clock: Any) -> None:
    """The summary counts every message by direction and by type, with first/last times."""
    start = clock.now
    session = service.add_message(PHONE, "hi")
    clock.advance(minutes=1)
    service.add_message(PHONE, "photo", message_type=MessageType.IMAGE)
    clock.advance(minutes=1)
    service.add_message(PHONE, "thanks", direction=OUT)
    clock.advance(minutes=1)
    service.add_message(PHONE, "error", message_type=MessageType.SYSTEM, direction=OUT)
    clock.advance(minutes=6)

    summary = service.get_session_summary(session.session_id)

    assert summary.message_count == 4
    assert summary.messages_by_direction == {"inbound": 2, "outbound": 2}
    assert summary.messages_by_type == {"text": 2, "image": 1, "system": 1}
    assert summary.first_message_at == start
    assert summary.last_message_at == start + timedelta(minutes=3)
    assert summary.last_activity == start + timedelta(minutes=3)
    assert summary.duration_seconds == 9 * 60
    assert summary.status is SessionStatus.ACTIVE
    assert summary.ended_at is None


def test_summary_duration_of_an_ended_session_stops_at_its_end(
    service: SessionService, clock: Any
) -> None:
    """An ended session's duration runs from creation to its end, not to now."""
    session = service.add_message(PHONE, "hi")
    clock.advance(minutes=10)
    service.complete_session(session.session_id)
    clock.advance(hours=5)
    summary = service.get_session_summary(session.session_id)
    assert summary.duration_seconds == 600
    assert summary.end_reason == "completed"


def test_summary_of_unknown_session_raises_session_not_found(service: SessionService) -> None:
    """A summary needs a stored session."""
    with pytest.raises(SessionNotFound):
        service.get_session_summary("ghost")


def test_window_closes_24_hours_after_the_last_inbound_message(
    make_service: MakeService, clock: Any
) -> None:
    """The customer-service window is open for 24 h after the last inbound message only."""
    service = make_service(session_timeout_hours=72)
    session = service.add_message(PHONE, "hi")
    inbound_at = clock.now

    clock.advance(hours=23, minutes=59)
    open_summary = service.get_session_summary(session.session_id)
    assert open_summary.window.open is True
    assert open_summary.window.last_inbound_at == inbound_at
    assert open_summary.window.closes_at == inbound_at + timedelta(hours=24)

    clock.advance(minutes=1)
    closed = service.get_session_summary(session.session_id)
    assert closed.window.open is False
    assert closed.status is SessionStatus.ACTIVE


def test_outbound_messages_do_not_reopen_the_window(make_service: MakeService, clock: Any) -> None:
    """Our replies move last_activity but not last_inbound_at, so they never reopen the window."""
    service = make_service(session_timeout_hours=72)
    session = service.add_message(PHONE, "hi")
    inbound_at = clock.now
    clock.advance(hours=25)

    after_reply = service.add_message(PHONE, "template reply", direction=OUT)

    assert after_reply.session_id == session.session_id
    assert after_reply.last_activity == clock.now
    assert after_reply.last_inbound_at == inbound_at
    summary = service.get_session_summary(session.session_id)
    assert summary.window.open is False
    assert summary.last_activity == clock.now

    clock.advance(minutes=1)
    reopened = service.add_message(PHONE, "customer answers")
    assert reopened.last_inbound_at == clock.now
    assert service.get_session_summary(session.session_id).window.open is True


def test_session_with_only_outbound_messages_has_a_closed_window(service: SessionService) -> None:
    """A session we opened ourselves (no inbound yet) has no window."""
    session = service.add_message(PHONE, "hello from us", direction=OUT)
    summary = service.get_session_summary(session.session_id)
    assert summary.window.open is False
    assert summary.window.last_inbound_at is None
    assert summary.window.closes_at is None


# ---- message cap -------------------------------------------------------------------------


def test_message_cap_keeps_the_newest_messages_and_counts_all(
    make_service: MakeService,
) -> None:
    """Past max_messages_per_session the oldest are dropped; message_count still counts all."""
    service = make_service(max_messages_per_session=3)
    for i in range(5):
        session = service.add_message(PHONE, f"m{i}", direction=IN if i % 2 == 0 else OUT)

    stored = service.get_session_by_id(session.session_id)
    assert stored is not None
    assert [m.content for m in stored.messages] == ["m2", "m3", "m4"]
    assert stored.message_count == 5
    assert stored.trimmed_count == 2
    assert session.session_id == stored.session_id
    summary = service.get_session_summary(session.session_id)
    assert summary.messages_by_direction == {"inbound": 3, "outbound": 2}
    assert summary.message_count == 5
    assert [m.content for m in service.get_conversation_history(PHONE, limit=50)] == [
        "m2",
        "m3",
        "m4",
    ]


def test_message_cap_trims_from_the_first_message_over_it(make_service: MakeService) -> None:
    """After every message the history is the newest min(n, cap), and trimmed_count is n - cap."""
    service = make_service(max_messages_per_session=3)
    contents: list[str] = []
    for n in range(1, 7):
        contents.append(f"m{n}")
        session = service.add_message(PHONE, contents[-1])
        stored = service.get_session_by_id(session.session_id)
        assert stored is not None
        assert [m.content for m in stored.messages] == contents[-3:]
        assert stored.message_count == n
        assert stored.trimmed_count == max(0, n - 3)


def test_conversation_history_limit_returns_the_newest_oldest_first(
    service: SessionService,
) -> None:
    """get_conversation_history(limit=n) gives the last n messages, oldest first."""
    for i in range(6):
        service.add_message(PHONE, f"m{i}")
    assert [m.content for m in service.get_conversation_history(PHONE, limit=2)] == ["m4", "m5"]
    assert service.get_conversation_history(OTHER) == []


def test_message_metadata_and_id_are_stored(service: SessionService, clock: Any) -> None:
    """The message id, metadata and an explicit timestamp survive the round trip."""
    at = clock.now - timedelta(seconds=30)
    service.add_message(
        PHONE,
        "pic",
        message_type=MessageType.IMAGE,
        metadata={"media_url": "https://example.test/1.jpg", "n": 1},
        message_id="SM123",
        timestamp=at,
    )
    [message] = service.get_conversation_history(PHONE)
    assert message.id == "SM123"
    assert message.metadata == {"media_url": "https://example.test/1.jpg", "n": 1}
    assert message.timestamp == at
    assert message.message_type is MessageType.IMAGE


# ---- sweeps and retention ------------------------------------------------------------------


def test_cleanup_expired_sessions_returns_the_count_and_leaves_recent_sessions(
    service: SessionService, clock: Any
) -> None:
    """Only sessions idle past the timeout are expired, and the number is returned."""
    stale = [service.add_message(f"+1415555010{i}", "old") for i in range(3)]
    clock.advance(hours=20)
    fresh = service.add_message(PHONE, "recent")
    clock.advance(hours=5)

    assert service.cleanup_expired_sessions() == 3

    for session in stale:
        stored = service.store.load(session.session_id)
        assert stored is not None
        assert stored.status is SessionStatus.EXPIRED
        assert stored.end_reason == "timeout"
    alive = service.get_session_by_phone(PHONE)
    assert alive is not None
    assert alive.session_id == fresh.session_id
    assert service.get_active_sessions_count() == 1
    assert service.cleanup_expired_sessions() == 0


def test_cleanup_expired_sessions_works_through_several_batches(
    service: SessionService, clock: Any
) -> None:
    """More idle sessions than one batch are all expired in one call."""
    for i in range(7):
        service.add_message(f"+1415555020{i}", "old")
    clock.advance(hours=24)
    assert service.cleanup_expired_sessions(batch=2) == 7
    assert service.get_active_sessions_count() == 0


def test_ended_sessions_keys_get_a_ttl_and_active_ones_do_not(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    """An ended session's hash and history expire a day after the retention period."""
    service = make_service(retention_days=2)
    live = service.add_message(PHONE, "live")
    ended = service.add_message(OTHER, "done")
    service.complete_session(ended.session_id)

    live_conv, ended_conv = conv(PHONE), conv(OTHER)
    assert redis_client.ttl(KEYS.session(live_conv, live.session_id)) == -1
    assert redis_client.ttl(KEYS.session_messages(live_conv, live.session_id)) == -1
    for key in (
        KEYS.session(ended_conv, ended.session_id),
        KEYS.session_messages(ended_conv, ended.session_id),
    ):
        ttl_ms = redis_client.pttl(key)
        assert 3 * 86_400_000 - 60_000 < ttl_ms <= 3 * 86_400_000


def test_retention_purge_removes_ended_sessions_from_every_index(
    make_service: MakeService, redis_client: redis.Redis, clock: Any
) -> None:
    """After retention_days an ended session is gone from every index and its keys deleted."""
    service = make_service(retention_days=7)
    done = service.add_message(PHONE, "done")
    service.complete_session(done.session_id)
    timed_out = service.add_message(OTHER, "idle")
    clock.advance(days=1)
    assert service.cleanup_expired_sessions() == 1
    live = service.add_message(PHONE, "still talking")

    clock.advance(days=5, hours=23)
    assert service.purge_retained() == 0
    assert service.get_all_sessions().total == 3

    clock.advance(hours=2)
    assert service.purge_retained() == 1
    assert service.store.load(done.session_id) is None
    clock.advance(days=1)
    assert service.purge_retained() == 1

    for sid, sid_conv in ((done.session_id, conv(PHONE)), (timed_out.session_id, conv(OTHER))):
        assert not redis_client.exists(
            KEYS.session(sid_conv, sid), KEYS.session_messages(sid_conv, sid)
        )
        assert redis_client.hget(KEYS.session_conv, sid) is None
        assert redis_client.zscore(KEYS.all, sid) is None
        assert redis_client.zscore(KEYS.ended, sid) is None
        assert redis_client.zscore(KEYS.status_index("completed"), sid) is None
        assert redis_client.zscore(KEYS.status_index("expired"), sid) is None
        assert redis_client.zscore(KEYS.active, sid) is None
    assert service.store.conversation_session_ids(conv(PHONE)) == [live.session_id]
    assert service.store.conversation_session_ids(conv(OTHER)) == []
    page = service.get_all_sessions()
    assert [s.session_id for s in page.sessions] == [live.session_id]
    assert page.total == 1
    assert service.get_all_sessions(status=SessionStatus.COMPLETED).total == 0
    assert service.get_all_sessions(status=SessionStatus.EXPIRED).total == 0


def test_cleanup_expired_sessions_also_purges_past_retention(
    make_service: MakeService, clock: Any
) -> None:
    """The periodic cleanup runs the retention purge too."""
    service = make_service(retention_days=1)
    done = service.add_message(PHONE, "done")
    service.complete_session(done.session_id)
    clock.advance(days=1, seconds=1)
    service.cleanup_expired_sessions()
    assert service.get_session_by_id(done.session_id) is None
    assert service.get_latest_session_by_phone(PHONE) is None


# ---- listings ------------------------------------------------------------------------------


def test_get_all_sessions_pages_newest_first(service: SessionService, clock: Any) -> None:
    """Pages walk every session newest first; total is the whole count on every page."""
    ids = []
    for i in range(5):
        ids.append(service.add_message(f"+1415555030{i}", "hi").session_id)
        clock.advance(minutes=1)
    newest_first = list(reversed(ids))

    pages = [service.get_all_sessions(offset=offset, limit=2) for offset in (0, 2, 4, 6)]

    assert [[s.session_id for s in p.sessions] for p in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]
    assert {p.total for p in pages} == {5}
    assert (pages[1].offset, pages[1].limit) == (2, 2)


def test_get_all_sessions_filters_by_status(service: SessionService, clock: Any) -> None:
    """The status filter lists only active, completed or expired sessions."""
    active = service.add_message("+14155550401", "a")
    completed = service.add_message("+14155550402", "c")
    expired = service.add_message("+14155550403", "x")
    service.complete_session(completed.session_id)
    service.expire_session(expired.session_id)

    def ids(status: SessionStatus | None) -> set[str]:
        return {s.session_id for s in service.get_all_sessions(status=status).sessions}

    assert ids(SessionStatus.ACTIVE) == {active.session_id}
    assert ids(SessionStatus.COMPLETED) == {completed.session_id}
    assert ids(SessionStatus.EXPIRED) == {expired.session_id}
    assert ids(None) == {active.session_id, completed.session_id, expired.session_id}
    page = service.get_active_sessions()
    assert [s.session_id for s in page.sessions] == [active.session_id]
    assert page.total == service.get_active_sessions_count() == 1
    assert all(s.messages == [] for s in service.get_all_sessions().sessions)


def test_active_sessions_are_listed_most_recently_active_first(
    service: SessionService, redis_client: redis.Redis, clock: Any
) -> None:
    """The active listing follows last activity, so a new message moves a session to the top."""
    older = service.add_message("+14155550601", "a")
    clock.advance(minutes=1)
    newer = service.add_message("+14155550602", "b")
    clock.advance(minutes=1)
    service.add_message("+14155550601", "a again")

    page = service.get_active_sessions()

    assert [s.session_id for s in page.sessions] == [older.session_id, newer.session_id]
    score = redis_client.zscore(KEYS.active, older.session_id)
    assert score == clock.now.timestamp() * 1000


def test_status_listing_of_ended_sessions_is_newest_ending_first(
    service: SessionService, clock: Any
) -> None:
    """A completed listing is ordered by end time, newest first."""
    first = service.add_message("+14155550501", "a")
    second = service.add_message("+14155550502", "b")
    clock.advance(minutes=1)
    service.complete_session(second.session_id)
    clock.advance(minutes=1)
    service.complete_session(first.session_id)
    page = service.get_all_sessions(status=SessionStatus.COMPLETED)
    assert [s.session_id for s in page.sessions] == [first.session_id, second.session_id]


# ---- addresses -----------------------------------------------------------------------------


def test_several_business_numbers_give_separate_conversations(service: SessionService) -> None:
    """One customer writing to two business numbers has two independent sessions."""
    default = service.add_message(PHONE, "to the default number")
    uk = service.add_message(PHONE, "to the UK number", business_number="whatsapp:+442079460000")

    assert default.session_id != uk.session_id
    assert uk.business_number == "+442079460000"
    service.complete_session(default.session_id)

    still = service.get_session_by_phone(PHONE, business_number="+442079460000")
    assert still is not None
    assert still.session_id == uk.session_id
    assert service.get_session_by_phone(PHONE) is None
    history = service.get_conversation_history(PHONE, business_number="+44 20 7946 0000")
    assert [m.content for m in history] == ["to the UK number"]
    assert [m.content for m in service.get_conversation_history(PHONE)] == ["to the default number"]
    assert service.get_active_sessions_count() == 1


def test_add_message_with_a_bsuid_opens_a_session_for_it(service: SessionService) -> None:
    """A WhatsApp business-scoped user id is a customer address like a phone number."""
    session = service.add_message(f"whatsapp:{BSUID}", "hi from a username")
    assert session.phone_number == BSUID
    again = service.add_message(BSUID, "again")
    assert again.session_id == session.session_id
    found = service.get_session_by_phone(BSUID)
    assert found is not None
    assert [m.content for m in found.messages] == ["hi from a username", "again"]
    assert service.store.conversation_session_ids(conv(BSUID)) == [session.session_id]


def test_add_message_rejects_an_invalid_address(service: SessionService) -> None:
    """An invalid customer address raises before anything is stored."""
    with pytest.raises(InvalidPhoneNumber):
        service.add_message("+1415|evil", "hi")
    assert service.get_all_sessions().total == 0
