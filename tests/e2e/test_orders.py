"""Orders and replies with the Procfile's real processes: offline defaults (rule-based
extraction, replies recorded but not sent), and OpenAI plus Twilio configured against local
fakes of their APIs, with Twilio's status callbacks reaching the stored reply."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import AUTH_TOKEN, PUBLIC_URL, Service
from tests.fake_apis import (
    OPENAI_KEY,
    FakeOpenAI,
    FakeTwilio,
    fake_openai,
    fake_twilio,
)
from tools.demo import inbound, new_message_sid, replies
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange

pytestmark = pytest.mark.e2e

ACCOUNT = "AC" + "0" * 32


def test_an_order_message_ends_with_the_order_and_a_recorded_reply(service: Service) -> None:
    """No OPENAI_API_KEY, no TWILIO_ACCOUNT_SID: "I need 5 units of Product A" gives the order
    in the session and a reply in the history, marked not sent; "make that 6" updates it."""
    sim = service.simulator()
    phone = "+14155550777"

    assert sim.send(phone, "I need 5 units of Product A").status == 200
    data = sim.wait_for_replies(phone, 1, 20)

    assert data["session"]["order_details"]["items"] == [
        {"name": "Product A", "quantity": 5, "unit": "units"}
    ]
    history = data["conversation_history"]
    assert [(m["direction"], m["content"]) for m in history] == [
        ("inbound", "I need 5 units of Product A"),
        ("outbound", "✅ Order received: 5 units of Product A"),
    ]
    assert history[1]["metadata"]["delivery_status"] == "not_sent"

    assert sim.send(phone, "make that 6").status == 200
    data = sim.wait_for_replies(phone, 2, 20)
    assert data["session"]["order_details"]["items"][0]["quantity"] == 6
    assert replies(data["conversation_history"])[-1]["content"] == (
        "✅ Order received: 6 units of Product A"
    )


@pytest.fixture
def apis() -> Iterator[tuple[FakeOpenAI, FakeTwilio]]:
    found = ExtractionResult(
        found=True,
        changes=[ItemChange(action=ItemAction.ADD, name="Product A", quantity=5, unit="units")],
    )
    with fake_openai(found) as openai_api, fake_twilio(ACCOUNT, AUTH_TOKEN) as twilio_api:
        yield openai_api, twilio_api


def test_with_openai_and_twilio_the_reply_is_sent_and_its_status_tracked(
    service_factory: Callable[..., Service], apis: tuple[FakeOpenAI, FakeTwilio]
) -> None:
    """OPENAI_* and TWILIO_* point at local fakes: the worker extracts through the OpenAI SDK,
    sends through the Twilio SDK with a status callback URL, and signed callbacks (one late,
    one repeated) leave the stored reply at ``read``."""
    openai_api, twilio_api = apis
    service = service_factory(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=openai_api.api_url,
        OPENAI_MODEL="gpt-test",
        TWILIO_ACCOUNT_SID=ACCOUNT,
        TWILIO_API_BASE_URL=twilio_api.base_url,
    ).start_all()
    sim = service.simulator()
    phone = "+14155550778"

    assert sim.send(phone, "five of product A please", message_sid=new_message_sid()).status == 200
    data = sim.wait_for_replies(phone, 1, 30)

    assert data["session"]["order_details"]["items"] == [
        {"name": "Product A", "quantity": 5, "unit": "units"}
    ]
    [reply] = replies(data["conversation_history"])
    sid = reply["metadata"]["twilio_sid"]
    assert reply["metadata"]["sent"] is True
    [create] = twilio_api.requests
    assert create.form()["StatusCallback"] == PUBLIC_URL + "/twilio-status"
    assert create.form()["To"] == f"whatsapp:{phone}"
    assert openai_api.requests[0].json()["model"] == "gpt-test"

    for status in ("sent", "read", "delivered", "read"):
        assert sim.send_status(sid, status, to=phone).status == 200
    forger = dataclasses.replace(sim, auth_token="not-the-token")
    assert forger.send_status(sid, "failed", to=phone, error_code="30008").status == 403

    final = sim.session(phone).json()["conversation_history"]
    assert [m["content"] for m in inbound(final)] == ["five of product A please"]
    assert replies(final)[0]["metadata"]["delivery_status"] == "read"
