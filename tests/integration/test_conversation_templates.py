"""``POST /conversations`` with a conversation ``template`` over the ASGI client, the real
Redis and the real drain: the flow's first prompt inside the window, then the customer's
answers walk the flow to ``completed``; an approved WhatsApp template outside it; refusals
(no content outside the window, STOP, a flow already running, an unknown template)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.integration.test_conversations import Desk, counted
from tests.integration.test_effects import PHONE, build_harness
from tests.integration.test_outreach import TEMPLATE_SID, TemplateSender
from tests.integration.test_webhook import make_settings, wake_messages
from wa_sessions.flows.registry import FlowTemplates, load_shipped
from wa_sessions.statemachine.conversations import ConversationStarter
from wa_sessions.statemachine.models import SessionStatus
from wa_sessions.statemachine.redis.inbox import AsyncInbox, InboxPolicy
from wa_sessions.webhook import WebDeps, create_app

EXCHANGE = ("I need 2 units of Product A", "John Doe", "12 Main Street, Springfield", "yes")
ITEMS_PROMPT = 'What would you like to order? For example "2 x Margherita pizza"'


@pytest.fixture
def desk(redis_client: redis.Redis, redis_url: str, clock: FakeClock) -> Iterator[Desk]:
    """The ``order`` template is loaded for another business number only: the desk's own
    sessions follow no flow until one is started for them."""
    templates = FlowTemplates(None, {"+15550000000": load_shipped("order")})
    sender = TemplateSender()
    h = build_harness(
        redis_client, clock, sender=sender, session_timeout_hours=48, flow_templates=templates
    )
    inbox = AsyncInbox(
        redis.asyncio.Redis.from_url(redis_url),
        h.service.store.keys,
        InboxPolicy(),
        wake_message=wake_messages(),
    )
    starter = ConversationStarter(
        h.service,
        wake_message=inbox.wake_message,
        wake_ttl_ms=inbox.policy.wake_ttl_ms,
        templates=templates,
    )
    deps = WebDeps(settings=make_settings(), service=h.service, inbox=inbox, conversations=starter)
    with TestClient(create_app(deps)) as client:
        yield Desk(h, sender, client)
    h.deps.close()


def _greeted(desk: Desk) -> None:
    desk.h.accept("hello")
    desk.h.drain()
    desk.sender.sent.clear()


def test_a_started_order_flow_sends_its_first_prompt_and_the_answers_complete_it(
    desk: Desk,
) -> None:
    """Inside the window: 202, the session at the first step at once; the items prompt goes
    out as text; issue #15's exchange then ends the session completed with name and address."""
    _greeted(desk)

    status, body = desk.post(template="order")

    assert status == 202
    assert (body["session"]["flow"], body["session"]["flow_step"]) == ("order", "items")
    desk.h.drain()
    assert desk.sender.sent[0][0] == "text"
    assert str(desk.sender.sent[0][1]).startswith(ITEMS_PROMPT)
    for text in EXCHANGE:
        desk.h.accept(text)
        desk.h.drain()
        desk.h.clock.advance(seconds=5)
    session = desk.h.session()
    order = session.order_details or {}
    assert session.status is SessionStatus.COMPLETED
    assert (session.flow, session.flow_step) == ("order", "done")
    assert order["customer_name"] == "John Doe"
    assert order["delivery_address"] == "12 Main Street, Springfield"
    replies = [str(body) for _, body in desk.sender.sent[1:]]
    assert replies[-1] == "🎉 Thank you, John Doe! Your order is confirmed: 2 units of Product A."


def test_a_flow_for_a_phone_without_a_window_needs_an_approved_template(desk: Desk) -> None:
    """No customer message, no content_sid: 409 outside_window, nothing queued, no flow set."""
    refused = counted("refused_outside_window")

    status, body = desk.post(template="order")

    assert (status, body["error"]["code"]) == (409, "outside_window")
    assert counted("refused_outside_window") == refused + 1
    assert desk.h.service.get_latest_session_by_phone(PHONE) is None


def test_a_flow_started_with_content_sid_sends_the_whatsapp_template(desk: Desk) -> None:
    """Outside the window the approved template goes out (ContentSid and its variables) and
    the customer's answer is read by the flow's first step."""
    status, body = desk.post(template="order", content_sid=TEMPLATE_SID, variables={"1": "Ana"})

    assert status == 202
    assert body["session"]["flow_step"] == "items"
    desk.h.drain()
    assert desk.sender.sent == [("template", (TEMPLATE_SID, {"1": "Ana"}))]
    desk.h.accept(EXCHANGE[0])
    desk.h.drain()
    assert str(desk.sender.sent[-1][1]).startswith("✅ Your order so far: 2 units of Product A.")
    assert desk.h.session().flow_step == "items"


def test_a_phone_that_sent_stop_gets_no_flow(desk: Desk) -> None:
    desk.h.accept("STOP")
    desk.h.drain()
    desk.sender.sent.clear()

    status, body = desk.post(template="order", content_sid=TEMPLATE_SID)

    assert (status, body["error"]["code"]) == (409, "opted_out")
    desk.h.drain()
    assert desk.sender.sent == []
    assert desk.h.session().flow is None


def test_a_second_flow_on_a_session_in_a_flow_is_refused(desk: Desk) -> None:
    """The customer owes the running flow an answer: 409 flow_in_progress, counted."""
    _greeted(desk)
    assert desk.post(template="order")[0] == 202
    refused = counted("refused_flow_in_progress")

    status, body = desk.post(template="order", content_sid=TEMPLATE_SID)

    assert (status, body["error"]["code"]) == (409, "flow_in_progress")
    assert counted("refused_flow_in_progress") == refused + 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": "nope"}, "template"),
        ({"template": "order", "text": "hi"}, "text"),
        ({"template": "order", "variables": {"1": "x"}}, "variables"),
        ({"template": ""}, "template"),
    ],
)
def test_bad_template_requests_are_a_400_naming_the_field(
    desk: Desk, body: dict[str, object], field: str
) -> None:
    _greeted(desk)
    status, answer = desk.post(**body)
    assert status == 400
    assert field in answer["error"]["message"]
    assert desk.h.session().flow is None
