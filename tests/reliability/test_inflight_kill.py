"""SIGKILL of the worker group while many phones' OpenAI or Twilio calls are in flight on its
drain loops: nothing is lost or doubled in the sessions. Every message is stored once, every
phone ends with exactly one stored reply and an order merged once (5 units, not 10); a reply
Twilio had accepted before the kill may reach Twilio twice (at least once, never lost)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import AUTH_TOKEN, Service
from tests.fake_apis import (
    OPENAI_KEY,
    FakeOpenAI,
    FakeTwilio,
    Recorded,
    Reply,
    extraction_reply,
    fake_openai,
    fake_twilio,
    twilio_message,
)
from tests.reliability.harness import deadline_poll, phone, record
from tools.demo import inbound, replies
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ACCOUNT = "AC" + "0" * 32
PHONES = 16
OPENAI_SECONDS = 1.5
TWILIO_SECONDS = 1.5
FIVE = ExtractionResult(
    found=True,
    changes=[ItemChange(action=ItemAction.ADD, name="Product A", quantity=5, unit="units")],
)
#: Short budgets so a killed group's leases lapse in seconds (budget + lease).
ENV = {
    "OPENAI_API_KEY": OPENAI_KEY,
    "OPENAI_MODEL": "gpt-test",
    "OPENAI_TIMEOUT_SECONDS": "3",
    "OPENAI_RETRY_BUDGET_SECONDS": "4",
    "OPENAI_HISTORY_MESSAGES": "0",
    "TWILIO_ACCOUNT_SID": ACCOUNT,
    "TWILIO_TIMEOUT_SECONDS": "3",
    "TWILIO_RETRY_BUDGET_SECONDS": "4",
    "LEASE_SECONDS": "2",
    "REDRIVE_INTERVAL_SECONDS": "1",
}


class Slow:
    """Answers after ``seconds``, and counts the requests that have arrived."""

    def __init__(self, seconds: float, answer: Callable[[Recorded], Reply]) -> None:
        self.seconds = seconds
        self.answer = answer
        self.arrived = 0
        self._lock = threading.Lock()

    def __call__(self, request: Recorded) -> Reply:
        with self._lock:
            self.arrived += 1
        reply = self.answer(request)
        reply.delay = self.seconds
        return reply


@pytest.fixture
def apis() -> Iterator[tuple[FakeOpenAI, FakeTwilio]]:
    with fake_openai(FIVE) as openai_api, fake_twilio(ACCOUNT, AUTH_TOKEN) as twilio_api:
        yield openai_api, twilio_api


def _sessions(service: Service, customers: list[str]) -> dict[str, list[dict[str, Any]]]:
    sim = service.simulator()
    out: dict[str, list[dict[str, Any]]] = {}
    for customer in customers:
        resp = sim.session(customer)
        out[customer] = resp.json()["conversation_history"] if resp.status == 200 else []
    return out


@pytest.mark.parametrize("during", ["openai", "twilio"])
def test_a_kill_during_in_flight_calls_loses_and_doubles_nothing(
    during: str,
    service_factory: Callable[..., Service],
    apis: tuple[FakeOpenAI, FakeTwilio],
) -> None:
    """Sixteen phones order at once; when their calls (OpenAI's, or Twilio's) are in flight on
    the drain loops, the whole worker group is killed and restarted: every phone ends with
    its message stored once, one reply stored, and 5 units of Product A in its order."""
    openai_api, twilio_api = apis
    openai_slow = Slow(
        OPENAI_SECONDS if during == "openai" else 0.0, lambda r: extraction_reply(FIVE)
    )
    twilio_slow = Slow(
        TWILIO_SECONDS if during == "twilio" else 0.0,
        lambda r: Reply(201, twilio_message(r.form(), None)),
    )
    openai_api.set_default(openai_slow)
    twilio_api.set_default(twilio_slow)
    service = service_factory(
        OPENAI_BASE_URL=openai_api.api_url, TWILIO_API_BASE_URL=twilio_api.base_url, **ENV
    ).start_all()
    sim = service.simulator()
    customers = [phone(400 + i) for i in range(PHONES)]
    for customer in customers:
        assert sim.send(customer, "I need 5 units of Product A").status == 200

    slow = openai_slow if during == "openai" else twilio_slow
    # Most phones' calls have reached the stand-in and wait for its answer: kill then.
    deadline_poll(lambda: slow.arrived >= PHONES // 2, 60)
    in_flight_at_kill = slow.arrived
    killed_at = time.monotonic()
    service.kill("worker", signal.SIGKILL)
    time.sleep(1.0)
    service.start("worker")

    def all_answered() -> bool:
        sessions = _sessions(service, customers)
        return all(len(replies(history)) >= 1 for history in sessions.values())

    deadline_poll(all_answered, 90)
    recovered_after = time.monotonic() - killed_at
    time.sleep(1.0)  # a late duplicate commit would show now
    sessions = _sessions(service, customers)
    twilio_sends = {
        customer: sum(r.form().get("To") == f"whatsapp:{customer}" for r in twilio_api.requests)
        for customer in customers
    }
    record(
        f"kill_during_{during}_calls",
        phones=PHONES,
        calls_in_flight_at_kill=in_flight_at_kill,
        recovered_after_s=round(recovered_after, 2),
        twilio_sends_per_phone=sorted(set(twilio_sends.values())),
    )
    for customer, history in sessions.items():
        assert [m["content"] for m in inbound(history)] == ["I need 5 units of Product A"]
        assert len(replies(history)) == 1, customer
        assert replies(history)[0]["content"] == "✅ Order received: 5 units of Product A"
    for customer in customers:
        order = sim.session(customer).json()["session"]["order_details"]
        assert [(i["name"], i["quantity"]) for i in order["items"]] == [("Product A", 5)]
        # At least once: a send Twilio accepted before the kill may be repeated once.
        assert 1 <= twilio_sends[customer] <= 2, (customer, twilio_sends[customer])
    if during == "twilio":
        assert max(twilio_sends.values()) == 2, "no send was in flight at the kill"
