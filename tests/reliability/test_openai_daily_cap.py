"""One WhatsApp user cannot make the service spend OpenAI calls without bound: past
``OPENAI_DAILY_CALLS_PER_PHONE`` in a UTC day, that customer's messages are read by the rule-based
extractor, and still answered, while every other customer keeps OpenAI. The drain runs as a
worker runs it (the extractor the composition root builds, the drain loop's Redis client shared
with the cap), on the test run's Redis, against the OpenAI stand-in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio
from prometheus_client import REGISTRY

from tests.fake_apis import OPENAI_KEY, FakeOpenAI, fake_openai
from tests.unit.test_orders_settings import settings
from wa_sessions.bootstrap import build_extractor
from wa_sessions.orders.daily_cap import DailyCappedExtractor
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.orders.openai import OpenAIOrderExtractor
from wa_sessions.replies.sender import LogSender
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import Message, MessageDirection, Session
from wa_sessions.statemachine.redis.inbox import Inbox
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.redis.limits import RedisDailyCallCap
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms
from wa_sessions.workers import handlers
from wa_sessions.workers.handlers import WorkerDeps

BUSINESS = "+14155238886"
GREEDY = "+14155550100"
OTHER = "+14155550111"
#: What the OpenAI stand-in answers, whatever the message says.
FROM_OPENAI = ExtractionResult(
    found=True, changes=[ItemChange(action=ItemAction.ADD, name="Product A", quantity=5)]
)


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with fake_openai(FROM_OPENAI) as server:
        yield server


def fallbacks() -> float:
    value = REGISTRY.get_sample_value(
        "wa_sessions_extraction_fallbacks_total", {"reason": "daily_cap"}
    )
    return value or 0.0


def test_a_phone_over_its_daily_cap_gets_rule_based_extraction_and_others_keep_openai(
    api: FakeOpenAI, redis_client: redis.Redis, redis_url: str
) -> None:
    """Cap 2: the greedy phone's first two messages go to OpenAI, its third is read by the rules
    (no request reaches the stand-in) and still answered; another phone's message then still
    goes to OpenAI. The day's counter expires after the day."""
    configured = settings(
        openai_api_key=OPENAI_KEY,
        openai_base_url=api.api_url,
        openai_daily_calls_per_phone=2,
    )
    drain_redis = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    service = SessionService(redis_client, business_number=BUSINESS)
    extractor = build_extractor(configured, drain_redis)
    assert isinstance(extractor, DailyCappedExtractor)
    deps = WorkerDeps(
        service=service,
        inbox=Inbox(service.store),
        wake=lambda conv: None,
        async_redis=lambda: drain_redis,
        extractor=extractor,
        sender=LogSender(),
    )
    before = fallbacks()

    def say(phone: str, text: str) -> Session:
        conv = Conversation(phone, BUSINESS).key
        message = Message(id="SM" + uuid.uuid4().hex, content=text, timestamp=service.clock())
        deps.inbox.accept(conv, message, accepted_ms=to_ms(service.clock()))
        handlers.drain_conversation(deps, conv)
        session_id = service.store.latest_session_id(conv)
        assert session_id is not None
        session = service.store.load(session_id)
        assert session is not None
        return session

    try:
        say(GREEDY, "I need 1 units of Product X")
        say(GREEDY, "I need 2 units of Product Y")
        greedy = say(GREEDY, "I need 3 units of Product C")
        other = say(OTHER, "I need 4 units of Product D")
    finally:
        deps.close()

    prompts = [r.json()["input"][0]["content"][0]["text"] for r in api.requests]
    assert [p.rsplit("\n", 1)[-1] for p in prompts] == [
        "I need 1 units of Product X",
        "I need 2 units of Product Y",
        "I need 4 units of Product D",
    ]
    assert greedy.order_details is not None
    assert greedy.order_details["items"] == [
        {"name": "Product A", "quantity": 10, "unit": None},
        {"name": "Product C", "quantity": 3, "unit": "units"},
    ]
    replies = [m for m in greedy.messages if m.direction is MessageDirection.OUTBOUND]
    assert len(replies) == 3
    assert "Product C" in replies[-1].content
    assert other.order_details is not None
    assert other.order_details["items"] == [{"name": "Product A", "quantity": 5, "unit": None}]
    assert fallbacks() == before + 1
    day = datetime.now(UTC).strftime("%Y%m%d")
    counter = Keys().daily_calls("openai", day, greedy.phone_number)
    assert redis_client.get(counter) == "2"
    assert 0 < redis_client.ttl(counter) <= 25 * 3600


def test_the_allowance_is_per_day_and_not_taken_past_the_cap(redis_url: str) -> None:
    """Over the cap nothing more is counted; the next UTC day starts again from zero."""
    today = datetime.now(UTC).date()
    tomorrow = today + timedelta(days=1)

    async def takes() -> list[bool]:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        cap = RedisDailyCallCap(client, Keys(), "openai", 1)
        try:
            return [
                await cap.take(GREEDY, today),
                await cap.take(GREEDY, today),
                await cap.take(GREEDY, tomorrow),
                await cap.take(OTHER, today),
            ]
        finally:
            await client.aclose()

    assert asyncio.run(takes()) == [True, False, True, True]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.get(Keys().daily_calls("openai", today.strftime("%Y%m%d"), GREEDY)) == "1"
    client.close()


def test_no_cap_when_the_setting_is_zero() -> None:
    """``OPENAI_DAILY_CALLS_PER_PHONE=0`` leaves OpenAI unwrapped."""
    client = redis.asyncio.Redis()  # never connected: nothing is called
    configured = settings(openai_api_key=OPENAI_KEY, openai_daily_calls_per_phone=0)

    assert isinstance(build_extractor(configured, client), OpenAIOrderExtractor)
