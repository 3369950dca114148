"""Conversation templates through the real drain on the real Redis, with the offline
extractor: the shipped order flow from the first message to the completed session, its step
kept in the session between drains (a restart), "no" back to the items, the reply in the
customer's language, and a business number without a template answered as before."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import FakeClock
from tests.integration.test_effects import BUSINESS, FakeSender, Harness, build_harness
from wa_sessions.flows.registry import FlowTemplates, load_shipped, load_templates
from wa_sessions.statemachine.models import SessionStatus

EXCHANGE = ("I need 2 units of Product A", "John Doe", "12 Main Street, Springfield", "yes")


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender()


def _harness(
    redis_client: redis.Redis, clock: FakeClock, sender: FakeSender, templates: FlowTemplates
) -> Harness:
    return build_harness(redis_client, clock, sender=sender, flow_templates=templates)


@pytest.fixture
def h(redis_client: redis.Redis, clock: FakeClock, sender: FakeSender) -> Harness:
    return _harness(redis_client, clock, sender, load_templates("order", None))


def _say(h: Harness, text: str) -> None:
    h.accept(text)
    h.drain()
    h.clock.advance(seconds=5)


def test_the_order_flow_ends_completed_with_the_name_and_the_address(
    h: Harness, sender: FakeSender
) -> None:
    """Issue #15's exchange: four messages, four replies, the session completed by the flow."""
    for text in EXCHANGE:
        _say(h, text)

    session = h.session()
    order = session.order_details or {}
    assert session.status is SessionStatus.COMPLETED
    assert session.end_reason == "flow"
    assert (session.flow, session.flow_step) == ("order", "done")
    assert order["customer_name"] == "John Doe"
    assert order["delivery_address"] == "12 Main Street, Springfield"
    assert [(i["name"], i["quantity"]) for i in order["items"]] == [("Product A", 2)]
    bodies = [body for _, _, body in sender.sent]
    assert bodies[0].startswith("✅ Your order so far: 2 units of Product A.")
    assert bodies[1] == "Where should we deliver it? Please send the full address."
    assert bodies[2].startswith("Please confirm your order: 2 units of Product A, for John Doe")
    assert bodies[3] == "🎉 Thank you, John Doe! Your order is confirmed: 2 units of Product A."
    # The confirmation is the last thing stored: the reply, then the session ends.
    assert h.history()[-1] == ("outbound", "text", bodies[3])


def test_the_step_survives_a_restart_of_the_worker(
    redis_client: redis.Redis, clock: FakeClock, sender: FakeSender
) -> None:
    """A new worker (new deps, same Redis) continues at the stored step."""
    first = _harness(redis_client, clock, sender, load_templates("order", None))
    _say(first, EXCHANGE[0])
    _say(first, EXCHANGE[1])
    assert first.session().flow_step == "address"

    restarted = _harness(redis_client, clock, sender, load_templates("order", None))
    _say(restarted, EXCHANGE[2])

    session = restarted.session()
    assert session.flow_step == "confirm"
    assert (session.order_details or {})["delivery_address"] == EXCHANGE[2]


def test_no_at_the_confirmation_goes_back_to_the_items(h: Harness, sender: FakeSender) -> None:
    for text in (*EXCHANGE[:3], "no", "and 3 boxes of apples", "that's all"):
        _say(h, text)

    session = h.session()
    assert session.status is SessionStatus.ACTIVE
    assert session.flow_step == "confirm"
    assert sender.sent[3][2].startswith("✅ Your order so far")
    assert "3 boxes of apples" in sender.sent[-1][2]


def test_one_burst_of_the_whole_exchange_completes_in_one_drain(
    h: Harness, sender: FakeSender
) -> None:
    """Four messages applied in one batch run through the steps in order; one reply."""
    h.accept(*EXCHANGE)

    h.drain()

    assert h.session().status is SessionStatus.COMPLETED
    assert [body for _, _, body in sender.sent] == [
        "🎉 Thank you, John Doe! Your order is confirmed: 2 units of Product A."
    ]


def test_a_message_after_the_completion_opens_a_new_session_with_a_new_flow(
    h: Harness, sender: FakeSender
) -> None:
    for text in EXCHANGE:
        _say(h, text)
    completed = h.session().session_id

    _say(h, "hello")

    session = h.session()
    assert session.session_id != completed
    assert (session.status, session.flow_step) == (SessionStatus.ACTIVE, "items")
    assert sender.sent[-1][2].startswith("What would you like to order?")


def test_a_spanish_customer_is_asked_in_spanish(h: Harness, sender: FakeSender) -> None:
    _say(h, "Hola, necesito 5 unidades del Producto A")
    _say(h, "eso es todo")

    assert sender.sent[-1][2] == "¿A nombre de quién ponemos el pedido?"
    assert h.session().flow_step == "name"


def test_a_business_number_without_a_template_is_answered_as_before(
    redis_client: redis.Redis, clock: FakeClock, sender: FakeSender
) -> None:
    """A template for another number leaves this one's replies and sessions unchanged."""
    other = FlowTemplates(by_business={"+14155550999": load_shipped("order")})
    h = _harness(redis_client, clock, sender, other)

    _say(h, EXCHANGE[0])
    _say(h, "yes")

    session = h.session()
    assert sender.sent[0][2] == "✅ Order received: 2 units of Product A"
    assert (session.status, session.flow, session.flow_step) == (SessionStatus.ACTIVE, None, None)
    assert BUSINESS != "+14155550999"
