"""The events' body schema, the settings that configure them and what an HTTP answer means,
without a network."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tools.events_schema import PAGE, with_schema
from wa_sessions.config import Settings
from wa_sessions.events.schema import MalformedEntry, event_body, event_from_entry
from wa_sessions.events.sender import Verdict, judge, retry_after_seconds

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8sqoREt2c3c="


def test_docs_events_page_shows_the_schema_the_models_generate() -> None:
    """Run ``python -m tools.events_schema`` after changing a model."""
    page = PAGE.read_text(encoding="utf-8")
    assert with_schema(page) == page


def test_an_order_update_carries_the_order_and_who_it_is_for() -> None:
    fields = {
        "type": "order.updated",
        "session_id": "s-1",
        "conv": "+14155550001|+14155238886",
        "at": "1767268800000",
        "data": json.dumps({"items": [{"name": "tea", "quantity": 2}], "currency": "EUR"}),
    }
    body = json.loads(event_body(event_from_entry("1767268800000-3", fields)))
    assert body == {
        "type": "order.updated",
        "id": "evt_1767268800000-3",
        "timestamp": "2026-01-01T12:00:00Z",
        "data": {
            "session_id": "s-1",
            "customer": "+14155550001",
            "business": "+14155238886",
            "order_details": {"items": [{"name": "tea", "quantity": 2}], "currency": "EUR"},
        },
    }


def test_a_failed_message_event_names_the_message_and_twilios_code() -> None:
    fields = {
        "type": "message.failed",
        "session_id": "s-1",
        "conv": "+14155550001|+14155238886",
        "at": "1767268800000",
        "data": json.dumps({"message_id": "m-7", "reason": "undelivered", "error_code": 63016}),
    }
    data = json.loads(event_body(event_from_entry("1-0", fields)))["data"]
    assert (data["message_id"], data["reason"], data["error_code"]) == (
        "m-7",
        "undelivered",
        "63016",
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"type": "session.paused"}, "unknown event type"),
        ({"type": "session.started", "at": "soon", "data": "{}"}, "'at' or 'data' unreadable"),
        ({"type": "session.started", "at": "1", "data": "[1]"}, "not a JSON object"),
        ({"type": "session.started", "at": "1", "data": "{}"}, "data.status: Field required"),
    ],
)
def test_an_entry_outside_the_contract_is_refused_naming_the_problem(
    fields: dict[str, str], problem: str
) -> None:
    with pytest.raises(MalformedEntry, match=problem):
        event_from_entry("1-0", fields)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.RETRY),
        (400, Verdict.GIVE_UP),
        (404, Verdict.GIVE_UP),
        (408, Verdict.RETRY),
        (410, Verdict.GIVE_UP),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_an_answer_is_delivered_given_up_or_retried_by_its_status(
    status: int, verdict: Verdict
) -> None:
    assert judge(status, None).verdict is verdict


def test_retry_after_is_read_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Thu, 01 Jan 2026 12:10:00 GMT", now) == 600
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0
    assert retry_after_seconds("later", now) is None
    assert retry_after_seconds(None, now) is None


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"events_webhook_url": "https://b.example/hooks"}, "EVENTS_WEBHOOK_SECRET is required"),
        ({"events_webhook_secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8sqoREt2c3c="}, "whsec_"),
        ({"events_webhook_secret": "whsec_QUJDRA=="}, "holds 4 bytes; at least 24"),
        ({"events_webhook_secret": "whsec_not base64!"}, "not whsec_ followed by base64"),
        ({"events_webhook_url": "ftp://b.example/x", "events_webhook_secret": SECRET}, "http"),
        ({"events_retry_hours": 0}, "greater than 0"),
    ],
)
def test_events_settings_refuse_what_would_not_work(env: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(**env)  # type: ignore[arg-type]


def test_events_are_off_without_a_url_and_on_with_a_url_and_its_secret() -> None:
    assert not Settings().sends_events
    on = Settings(events_webhook_url="https://b.example/hooks", events_webhook_secret=SECRET)
    assert on.sends_events
    assert on.events_retry_hours == 24
