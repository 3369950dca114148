"""``POST /conversations`` over HTTP on the real Redis and the real drain: a template reaches
a phone with no session, free text only inside the 24-hour window, nothing to a phone that
sent STOP (409s naming why, counted), bad input a 400 naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.integration.test_effects import PHONE, Harness, build_harness, sample
from tests.integration.test_outreach import TEMPLATE_SID, TemplateSender
from tests.integration.test_webhook import make_settings, wake_messages
from wa_sessions.statemachine.redis.inbox import AsyncInbox, InboxPolicy
from wa_sessions.webhook import WebDeps, create_app

ADMIN = {"Authorization": "Bearer admin"}
BUSINESS_MESSAGES = "wa_sessions_business_messages_total"


class Desk:
    def __init__(self, h: Harness, sender: TemplateSender, api: TestClient) -> None:
        self.h = h
        self.sender = sender
        self.api = api

    def post(self, **body: Any) -> tuple[int, dict[str, Any]]:
        response = self.api.post(
            "/conversations", json={"phone_number": PHONE, **body}, headers=ADMIN
        )
        return response.status_code, response.json()


@pytest.fixture
def desk(redis_client: redis.Redis, redis_url: str, clock: FakeClock) -> Iterator[Desk]:
    sender = TemplateSender()
    h = build_harness(redis_client, clock, sender=sender, session_timeout_hours=48)
    inbox = AsyncInbox(
        redis.asyncio.Redis.from_url(redis_url),
        h.service.store.keys,
        InboxPolicy(),
        wake_message=wake_messages(),
    )
    deps = WebDeps(settings=make_settings(), service=h.service, inbox=inbox)
    with TestClient(create_app(deps)) as client:
        yield Desk(h, sender, client)
    h.deps.close()


def counted(outcome: str) -> float:
    return sample(BUSINESS_MESSAGES, {"outcome": outcome})


def test_a_template_reaches_a_phone_without_a_session_through_its_worker(desk: Desk) -> None:
    """202 with the message id; the drain sends the Content API template with its variables
    and stores it in the session opened for it."""
    sent = counted("sent")
    status, body = desk.post(content_sid=TEMPLATE_SID, variables={"1": "Ana", "2": "Friday"})

    assert status == 202
    assert body["message_id"].startswith("conversation-")
    desk.h.drain()
    assert desk.sender.sent == [("template", (TEMPLATE_SID, {"1": "Ana", "2": "Friday"}))]
    assert desk.h.history()[-1][0] == "outbound"
    assert counted("sent") == sent + 1


def test_free_text_is_sent_inside_the_window_and_refused_after_it(desk: Desk) -> None:
    """Inside the 24 hours of the customer's last message: sent. 25 hours later (the session
    still active): 409 outside_window, counted, nothing queued."""
    desk.h.accept("hello")
    desk.h.drain()
    desk.sender.sent.clear()

    assert desk.post(text="Your table is ready")[0] == 202
    desk.h.drain()
    assert desk.sender.sent == [("text", "Your table is ready")]

    desk.h.clock.advance(hours=25)
    refused = counted("refused_outside_window")
    status, body = desk.post(text="Still there?")
    assert (status, body["error"]["code"]) == (409, "outside_window")
    assert "only approved templates (content_sid)" in body["error"]["message"]
    assert counted("refused_outside_window") == refused + 1
    desk.h.drain()
    assert len(desk.sender.sent) == 1


def test_a_phone_that_sent_stop_gets_nothing_not_even_a_template(desk: Desk) -> None:
    desk.h.accept("STOP")
    desk.h.drain()
    desk.sender.sent.clear()
    refused = counted("refused_opted_out")

    status, body = desk.post(content_sid=TEMPLATE_SID)

    assert (status, body["error"]["code"]) == (409, "opted_out")
    assert counted("refused_opted_out") == refused + 1
    desk.h.drain()
    assert desk.sender.sent == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "hi", "content_sid": TEMPLATE_SID}, "content_sid"),
        ({}, "content_sid"),
        ({"content_sid": "HX123"}, "content_sid"),
        ({"content_sid": TEMPLATE_SID, "variables": {"1": 5}}, "variables"),
        ({"text": "hi", "variables": {"1": "x"}}, "variables"),
        ({"text": "   "}, "text"),
        ({"template": "order"}, "template"),  # none loaded here: unknown
        ({"content_sid": TEMPLATE_SID, "phone_number": "not a phone"}, "phone"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(desk: Desk, body: dict[str, Any], field: str) -> None:
    status, answer = desk.post(**body)
    assert status == 400
    assert field in answer["error"]["message"]
    desk.h.drain()
    assert desk.sender.sent == []


def test_the_route_needs_the_admin_token(desk: Desk) -> None:
    response = desk.api.post(
        "/conversations", json={"phone_number": PHONE, "content_sid": TEMPLATE_SID}
    )
    assert response.status_code == 401
