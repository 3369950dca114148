"""The analytics rollups on the real Redis, written by the real paths: messages through the
inbox and the drain (with the rule-based extractor and a sender standing in for Twilio), a
session completed through the session API, others expired by the idle sweep, Twilio's status
callbacks posted to ``/twilio-status``; then ``GET /analytics`` and the reader's report.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from tests.conftest import FakeClock

# The status callback tests' ``web`` fixture (the app, the drain and a recording sender).
from tests.integration.test_status_callbacks import Web, web  # noqa: F401
from wa_sessions.analytics.buckets import TOP_ITEMS_CAP
from wa_sessions.analytics.reader import AnalyticsReader
from wa_sessions.analytics.report import AnalyticsReport, epoch_day, epoch_hour
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import Message, SessionCreate, SessionStatus, SessionUpdate
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms
from wa_sessions.workers import handlers

ADMIN = {"Authorization": "Bearer admin"}
BUSINESS = "+14155238886"
OTHER = "+14155238887"
DAY = "2026-01-01"
NEXT_DAY = "2026-01-02"


@dataclass
class World:
    """The status callback tests' web app and drain (``web``), with a sender that takes 3 s of
    the fake clock per send and keeps the MessageSids it gave out."""

    web: Web
    sids: list[str] = field(default_factory=list)
    #: Post a ``delivered`` callback as soon as Twilio accepted a reply, before its commit.
    early_delivery: bool = False

    def __post_init__(self) -> None:
        self.web.sender.on_accepted = self._accepted

    def _accepted(self, sid: str) -> None:
        self.web.clock.advance(seconds=3)
        self.sids.append(sid)
        if self.early_delivery:
            self.web.callback(sid, "delivered")

    def message(self, phone: str, body: str, business: str = BUSINESS) -> str:
        """A customer message accepted now and drained; returns the reply's MessageSid."""
        conv = Conversation(phone, business).key
        clock = self.web.clock
        message = Message(id="SM" + uuid.uuid4().hex, content=body, timestamp=clock())
        self.web.deps.inbox.accept(conv, message, accepted_ms=to_ms(clock()))
        handlers.drain_conversation(self.web.deps, conv)
        return self.sids[-1]

    def session_id(self, phone: str) -> str:
        sid = self.web.service.store.latest_session_id(Conversation(phone, BUSINESS).key)
        assert sid is not None
        return sid

    def analytics(self, **params: str) -> httpx.Response:
        return self.web.client.get("/analytics", params=params, headers=ADMIN)

    def report(self, **params: str) -> AnalyticsReport:
        response = self.analytics(**params)
        assert response.status_code == 200, response.text
        return AnalyticsReport.model_validate(response.json())


@pytest.fixture
def world(web: Web) -> World:  # noqa: F811 (pytest passes the imported fixture)
    return World(web)


def errors(code: str) -> float:
    return REGISTRY.get_sample_value("wa_sessions_api_errors_total", {"code": code}) or 0.0


def test_two_days_of_traffic_add_up_to_the_report(world: World) -> None:
    """Three sessions opened at 12:00 (and one for another number), one completed through
    the API at 12:10, the others expired by the idle sweep the next day at 13:30 (the
    timeout is 24 h), replies 3 s after their messages, delivery callbacks before and after
    their reply's commit: the report counts each once, in its hour."""
    app = world.web
    reply_a = world.message("+14155550101", "I need 5 units of Product A")
    reply_b = world.message("+14155550102", "3 boxes of apples")
    world.early_delivery = True  # counted when the commit maps the reply
    world.message("+14155550103", "hello")
    world.early_delivery = False
    world.message("+14155550104", "2 x pizza", business=OTHER)
    for sid, status in ((reply_a, "delivered"), (reply_a, "read"), (reply_b, "undelivered")):
        app.callback(sid, status)
    app.callback(reply_a, "read")  # a repeat counts once

    app.clock.now = app.clock.now.replace(minute=10, second=0)
    completed = app.client.post(
        f"/session/{world.session_id('+14155550101')}/complete", headers=ADMIN
    )
    assert completed.status_code == 200
    app.clock.now = app.clock.now.replace(day=2, hour=13, minute=30)
    assert handlers.expire_idle_sessions(app.deps) == 3

    report = world.report(**{"from": DAY, "to": NEXT_DAY, "business_number": BUSINESS})

    assert (report.started, report.completed, report.expired) == (3, 1, 2)
    busy = {
        (h.start.day, h.start.hour): (h.started, h.completed, h.expired)
        for h in report.hours
        if h.started or h.completed or h.expired
    }
    assert busy == {(1, 12): (3, 1, 0), (2, 13): (0, 0, 2)}
    assert len(report.hours) == 48
    assert [(d.started, d.completed, d.expired) for d in report.days] == [(3, 1, 0), (0, 0, 2)]
    # 600 s (<= 900 s) once; about 25.5 h (<= 48 h) twice.
    durations = report.duration_seconds
    assert [(i, b.count) for i, b in enumerate(durations.buckets) if b.count] == [(2, 1), (9, 2)]
    assert durations.p50 == pytest.approx(86_400 + 86_400 * 0.5 / 2)
    assert durations.p95 == pytest.approx(86_400 + 86_400 * 1.85 / 2)
    # Each session holds its message and its reply.
    assert report.messages_per_session.buckets[1].count == 3
    assert report.reply_seconds.count == 3
    assert report.reply_seconds.buckets[3].count == 3  # 3 s: in (2 s, 5 s]
    assert report.reply_seconds.p50 == pytest.approx(3.5)
    assert report.sessions_with_order == 2
    assert report.order_share == pytest.approx(2 / 3)
    assert [(i.name, i.quantity) for i in report.top_items] == [("product a", 5), ("apples", 3)]
    assert report.delivery.model_dump() == {
        "delivered": 2,
        "read": 1,
        "failed": 0,
        "undelivered": 1,
        "success_rate": pytest.approx(2 / 3),
    }
    assert report.business_numbers == [BUSINESS]

    everyone = world.report(**{"from": DAY, "to": NEXT_DAY})
    assert everyone.business_number is None
    assert everyone.business_numbers == [BUSINESS, OTHER]
    assert (everyone.started, everyone.expired) == (4, 3)
    assert [i.name for i in everyone.top_items] == ["product a", "apples", "pizza"]

    first_day = world.report(**{"from": DAY, "to": DAY})
    assert (first_day.started, first_day.expired, first_day.sessions_with_order) == (4, 0, 1)


def test_a_read_that_skipped_delivered_counts_as_both_and_a_failure_after_it_too(
    world: World,
) -> None:
    """``read`` first: delivered and read once each; a late ``delivered`` adds nothing; a
    reply that fails after being sent counts as failed."""
    read = world.message("+14155550101", "I need 5 units of Product A")
    failed = world.message("+14155550101", "and 2 boxes of apples")
    for sid, status in ((read, "read"), (read, "delivered"), (failed, "sent"), (failed, "failed")):
        world.web.callback(sid, status)

    delivery = world.report(**{"from": DAY, "to": DAY}).delivery

    assert (delivery.delivered, delivery.read, delivery.failed) == (1, 1, 1)
    assert delivery.success_rate == pytest.approx(1 / 2)


def test_rollups_expire_the_retention_period_after_their_hour(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    """With ANALYTICS_RETENTION_DAYS at 2, the hour hash of a session opened at 12:00 lives
    two days and an hour (the rest of its hour), not the default 90 days."""
    service = SessionService(redis_client, clock=clock, analytics_retention_days=2)
    service.create_session(SessionCreate(phone_number="+14155550101"))

    key = service.store.keys.rollup(service.business_number, epoch_hour(clock()))
    ttl_ms = redis_client.pttl(key)
    assert redis_client.hget(key, "started") == "1"
    assert 2 * 86_400_000 < ttl_ms <= 2 * 86_400_000 + 3_600_000


def test_the_reader_reports_one_number_without_the_others(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    """Sessions opened through the service for two numbers: a report for one counts only
    its own, a report for all counts both."""
    service = SessionService(redis_client, clock=clock)
    service.create_session(SessionCreate(phone_number="+14155550101", business_number=BUSINESS))
    service.create_session(SessionCreate(phone_number="+14155550102", business_number=OTHER))
    service.create_session(SessionCreate(phone_number="+14155550103", business_number=OTHER))
    reader = AnalyticsReader(service.store.client, service.store.keys)
    day = date(2026, 1, 1)

    assert reader.report(day, day, OTHER).started == 2
    assert reader.report(day, day, None).started == 3


def test_a_day_keeps_only_its_most_ordered_items(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    """An order of more distinct items than the cap: the day's zset keeps the cap's worth,
    dropping the least ordered, and the report lists the largest first."""
    service = SessionService(redis_client, clock=clock)
    session = service.create_session(SessionCreate(phone_number="+14155550101"))
    items = [{"name": f"Item {i}", "quantity": i + 1} for i in range(TOP_ITEMS_CAP + 5)]
    service.update_session(session.session_id, SessionUpdate(order_details={"items": items}))

    service.complete_session(session.session_id)

    key = service.store.keys.rollup_items(service.business_number, epoch_day(date(2026, 1, 1)))
    assert redis_client.zcard(key) == TOP_ITEMS_CAP
    assert redis_client.zscore(key, "item 0") is None
    report = AnalyticsReader(service.store.client, service.store.keys).report(
        date(2026, 1, 1), date(2026, 1, 1), None
    )
    assert report.top_items[0].name == f"item {TOP_ITEMS_CAP + 4}"
    assert report.sessions_with_order == 1


def test_an_order_not_in_the_expected_shape_counts_no_items(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    """Order details a business stored in another shape end with the session uncounted as
    an order, and the end itself is still counted."""
    service = SessionService(redis_client, clock=clock)
    session = service.create_session(SessionCreate(phone_number="+14155550101"))
    odd = {"items": [{"name": "Tea"}, "two apples", {"name": 3, "quantity": 1}]}
    service.update_session(session.session_id, SessionUpdate(order_details=odd))

    service.update_session(session.session_id, SessionUpdate(status=SessionStatus.EXPIRED))

    report = AnalyticsReader(service.store.client, service.store.keys).report(
        date(2026, 1, 1), date(2026, 1, 1), None
    )
    assert (report.expired, report.sessions_with_order, report.top_items) == (1, 0, [])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-01-05", "to": "2026-01-01"}, "is after"),
        ({"from": "2025-01-01", "to": "2026-01-01"}, "at most 92"),
        ({"from": "2026-13-01", "to": "2026-01-01"}, "from must be a date"),
        ({"from": "2026-01-01", "to": "yesterday"}, "to must be a date"),
    ],
)
def test_a_bad_day_range_is_refused_with_a_json_error(
    world: World, params: dict[str, str], message: str
) -> None:
    """Reversed, too long or unparsable ranges answer 400 ``invalid_day_range``, counted."""
    before = errors("invalid_day_range")

    response = world.analytics(**params)

    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid_day_range"
    assert message in body["error"]["message"]
    assert errors("invalid_day_range") == before + 1


def test_the_analytics_need_the_admin_token(world: World) -> None:
    """Without the bearer token the figures are refused like the rest of the session API."""
    response = world.web.client.get("/analytics")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_without_a_range_the_report_covers_the_last_seven_days(world: World) -> None:
    """No ``from``/``to``: the seven UTC days ending today (by the service's clock)."""
    report = world.report()

    assert (report.from_day, report.to_day) == (date(2025, 12, 26), date(2026, 1, 1))
    assert len(report.days) == 7
