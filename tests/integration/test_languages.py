"""The customer's language end to end on the real Redis and the real drain: detected from the
messages, kept in the session's context, overridden per phone over the session API, and the
reply written in it, with the offline extractor and with the OpenAI stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.conftest import FakeClock
from tests.fake_apis import fake_openai
from tests.integration.test_effects import (
    PHONE,
    FakeSender,
    Harness,
    build_harness,
    openai_extractor,
)
from tests.integration.test_webhook import make_settings, wake_messages
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.redis.inbox import AsyncInbox, InboxPolicy
from wa_sessions.webhook import WebDeps, create_app

ADMIN = {"Authorization": "Bearer admin"}
HOLA = "Hola, necesito 5 unidades del Producto A"
RESPUESTA = "✅ Pedido recibido: 5 unidades de Producto A"


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender()


@pytest.fixture
def h(redis_client: redis.Redis, clock: FakeClock, sender: FakeSender) -> Harness:
    return build_harness(redis_client, clock, sender=sender)


@pytest.fixture
def api(h: Harness, redis_url: str) -> Iterator[TestClient]:
    inbox = AsyncInbox(
        redis.asyncio.Redis.from_url(redis_url),
        h.service.store.keys,
        InboxPolicy(),
        wake_message=wake_messages(),
    )
    deps = WebDeps(settings=make_settings(), service=h.service, inbox=inbox)
    with TestClient(create_app(deps)) as client:
        yield client


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_spanish_order_is_stored_as_written_and_answered_in_spanish(
    h: Harness, sender: FakeSender
) -> None:
    """Issue #14's example with the offline extractor: 5 x "Producto A", a Spanish reply,
    ``language: es`` in the session's context, counted by language."""
    detected = sample("wa_sessions_language_detections_total", {"language": "es"})
    replied = sample("wa_sessions_replies_by_language_total", {"language": "es"})
    h.accept(HOLA)

    h.drain()

    session = h.session()
    items = (session.order_details or {})["items"]
    assert [(i["name"], i["quantity"], i["unit"]) for i in items] == [("Producto A", 5, "unidades")]
    assert [body for _, _, body in sender.sent] == [RESPUESTA]
    assert session.context["language"] == "es"
    assert sample("wa_sessions_language_detections_total", {"language": "es"}) == detected + 1
    assert sample("wa_sessions_replies_by_language_total", {"language": "es"}) == replied + 1


def test_the_openai_extractor_gets_the_language_and_the_reply_is_spanish(
    redis_client: redis.Redis, clock: FakeClock, sender: FakeSender
) -> None:
    """With the OpenAI stand-in: the prompt names the detected language and asks for names as
    written; the model's "Producto A" is stored as is and answered in Spanish."""
    found = ExtractionResult(
        found=True,
        changes=[ItemChange(action=ItemAction.ADD, name="Producto A", quantity=5, unit="unidades")],
    )
    with fake_openai(found) as api:
        policy = RetryPolicy(timeout_seconds=1.0, max_retries=0, budget_seconds=2.0)
        h = build_harness(
            redis_client, clock, extractor=openai_extractor(api, policy), sender=sender
        )
        h.accept(HOLA)

        h.drain()

        prompt = str(api.requests[-1].json())
    assert "language (ISO 639-1, detected): es" in prompt
    assert "never translate" in prompt
    assert [body for _, _, body in sender.sent] == [RESPUESTA]


def test_one_short_message_in_another_language_does_not_switch_the_replies(
    h: Harness, sender: FakeSender
) -> None:
    """A Spanish conversation stays Spanish after one short Portuguese message; a second one
    switches it (and the context keeps the candidate in between)."""
    h.accept(HOLA)
    h.drain()
    h.accept("quero mais três caixas de maçãs")
    h.drain()
    assert h.session().context["language_candidate"] == "pt"
    h.accept("e mais duas garrafas de água")
    h.drain()

    bodies = [body for _, _, body in sender.sent]
    assert bodies[1].startswith("✅ Pedido recibido:")
    assert bodies[2].startswith("✅ Pedido recebido:")
    assert h.session().context["language"] == "pt"


def test_the_business_override_per_phone_wins_over_detection(
    h: Harness, sender: FakeSender, api: TestClient
) -> None:
    """PUT /phones/{phone}/language makes the replies German whatever the customer writes;
    null hands the choice back to detection."""
    put = api.put(f"/phones/{PHONE}/language", json={"language": "de"}, headers=ADMIN)
    assert put.status_code == 200
    assert put.json()["language"] == "de"
    assert api.get(f"/phones/{PHONE}/language", headers=ADMIN).json()["language"] == "de"
    h.accept(HOLA)
    h.drain()

    cleared = api.put(f"/phones/{PHONE}/language", json={"language": None}, headers=ADMIN)
    h.accept("y dos botellas de agua por favor")
    h.drain()

    assert cleared.json()["language"] is None
    bodies = [body for _, _, body in sender.sent]
    assert bodies[0] == "✅ Bestellung erhalten: 5 unidades Producto A"
    assert bodies[1].startswith("✅ Pedido recibido:")


@pytest.mark.parametrize("language", ["xx", "EN", "english", "", 5])
def test_an_unsupported_override_is_refused_with_a_json_error(
    api: TestClient, language: object
) -> None:
    """Only the seven ISO codes (or null) are accepted: 400 naming the problem, nothing set."""
    response = api.put(f"/phones/{PHONE}/language", json={"language": language}, headers=ADMIN)

    assert response.status_code == 400
    assert "language" in response.text
    assert api.get(f"/phones/{PHONE}/language", headers=ADMIN).json()["language"] is None


def test_the_override_route_needs_the_admin_token(api: TestClient) -> None:
    """Like every session API route."""
    response = api.put(f"/phones/{PHONE}/language", json={"language": "es"})

    assert response.status_code == 401
