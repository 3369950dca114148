"""The shipped order flow with the Procfile's real processes (``CONVERSATION_TEMPLATE=order``,
the offline extractor) and Twilio's Messages API stood in for locally: what the customer
receives, in order, and the session completed with the name and the address."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import AUTH_TOKEN, Service
from tests.fake_apis import FakeTwilio, fake_twilio
from tools.demo import new_message_sid

pytestmark = pytest.mark.e2e

ACCOUNT = "AC" + "0" * 32
EXCHANGE = ("I need 2 units of Product A", "John Doe", "12 Main Street, Springfield", "yes")


@pytest.fixture
def twilio_api() -> Iterator[FakeTwilio]:
    with fake_twilio(ACCOUNT, AUTH_TOKEN) as api:
        yield api


def test_the_order_flow_asks_step_by_step_and_completes_the_session(
    service_factory: Callable[..., Service], twilio_api: FakeTwilio
) -> None:
    """Four customer messages, four messages sent through Twilio in order, the last the
    confirmation; the session ``completed`` with "John Doe" and the address."""
    service = service_factory(
        CONVERSATION_TEMPLATE="order",
        TWILIO_ACCOUNT_SID=ACCOUNT,
        TWILIO_API_BASE_URL=twilio_api.base_url,
    ).start_all()
    sim = service.simulator()
    phone = "+14155550779"

    for count, text in enumerate(EXCHANGE, 1):
        assert sim.send(phone, text, message_sid=new_message_sid()).status == 200
        data = sim.wait_for_replies(phone, count, 30)

    received = [(r.form()["To"], r.form()["Body"]) for r in twilio_api.requests]
    assert received == [
        (
            f"whatsapp:{phone}",
            '✅ Your order so far: 2 units of Product A. Anything else? Say "that\'s all" '
            "when you're done.",
        ),
        (f"whatsapp:{phone}", "Where should we deliver it? Please send the full address."),
        (
            f"whatsapp:{phone}",
            "Please confirm your order: 2 units of Product A, for John Doe, delivered to 12 Main "
            "Street, Springfield. Reply YES to confirm or NO to change the items.",
        ),
        (
            f"whatsapp:{phone}",
            "🎉 Thank you, John Doe! Your order is confirmed: 2 units of Product A.",
        ),
    ]
    session = sim.session(phone).json()["session"]
    assert session["status"] == "completed"
    assert (session["flow"], session["flow_step"]) == ("order", "done")
    assert session["order_details"]["customer_name"] == "John Doe"
    assert session["order_details"]["delivery_address"] == "12 Main Street, Springfield"
    assert data["session"]["session_id"] == session["session_id"]
