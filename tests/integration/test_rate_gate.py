"""OpenAI's rate limits through the real SDK against a local stand-in: a 429 with Retry-After
slows every extraction down instead of failing them, the pause reaches the other processes of
the deployment through Redis, and the per-process cap and the requests-per-minute bucket hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio

from tests.fake_apis import OPENAI_KEY, FakeOpenAI, Reply, extraction_reply, fake_openai
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest
from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange
from wa_sessions.orders.openai import OpenAIOrderExtractor
from wa_sessions.ratelimit import RateGate
from wa_sessions.retries import RetryPolicy
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.redis.limits import RedisSharedLimit

FIVE_OF_A = ExtractionResult(
    found=True, changes=[ItemChange(action=ItemAction.ADD, name="Product A", quantity=5)]
)
KEYS = Keys("wa:")


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with fake_openai(FIVE_OF_A) as server:
        yield server


def request(n: int) -> ExtractionRequest:
    return ExtractionRequest(
        Message(id=f"SM{n}", content="I need 5 units of Product A", timestamp=datetime.now(UTC))
    )


def limited(url: str, rpm: int = 0) -> RedisSharedLimit:
    return RedisSharedLimit(redis.asyncio.Redis.from_url(url), KEYS, "openai", rpm)


def extract_all(
    api: FakeOpenAI, gate: RateGate, n: int, *, budget: float = 10.0
) -> list[ExtractionResult | ExtractionFailure]:
    """``n`` extractions at once through one gate, on one event loop (a worker's drain loop)."""
    extractor = OpenAIOrderExtractor(
        api_key=OPENAI_KEY,
        model="gpt-test",
        base_url=api.api_url,
        policy=RetryPolicy(timeout_seconds=2, max_retries=1, budget_seconds=budget),
        gate=gate,
    )

    async def run() -> list[ExtractionResult | ExtractionFailure]:
        try:
            return list(await asyncio.gather(*(extractor.extract(request(i)) for i in range(n))))
        finally:
            await extractor.close()
            if isinstance(gate.shared, RedisSharedLimit):
                await gate.shared.client.aclose()

    return asyncio.run(run())


def test_a_429_storm_slows_extractions_down_instead_of_failing_them(
    api: FakeOpenAI, redis_url: str, redis_client: redis.Redis
) -> None:
    """Twenty extractions at once meet a stand-in whose first six answers are 429s with
    Retry-After 0.4 s: every extraction ends answered, none failed. The gate admits three at a
    time; the first round's 429 pauses it for everyone, so the second round of 429s comes only
    after that pause (two pauses in a row: at least 0.8 s), not from the calls that were
    waiting for a slot while the first pause began."""
    api.reply(*[Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.4"})] * 6)
    gate = RateGate(max_concurrency=3, shared=limited(redis_url))

    started = time.monotonic()
    results = extract_all(api, gate, 20)

    assert all(result == FIVE_OF_A for result in results)
    assert len(api.requests) == 26  # two rounds of 3 refused, then 20 answered
    assert time.monotonic() - started >= 0.8
    # The pause was shared through Redis (it has lapsed by now, or nearly).
    assert redis_client.exists(KEYS.rate_pause("openai")) in (0, 1)


def test_a_pause_set_by_another_process_holds_this_one_back(
    api: FakeOpenAI, redis_url: str, redis_client: redis.Redis
) -> None:
    """A pause in Redis (another worker's 429) delays this process's calls until it lapses."""
    redis_client.set(KEYS.rate_pause("openai"), "1", px=600)
    gate = RateGate(max_concurrency=8, shared=limited(redis_url))

    started = time.monotonic()
    results = extract_all(api, gate, 4)

    assert all(result == FIVE_OF_A for result in results)
    assert time.monotonic() - started >= 0.5


def test_the_per_process_cap_bounds_calls_in_flight(api: FakeOpenAI) -> None:
    """With a cap of 2 and a stand-in that takes 0.2 s, 6 calls take three rounds."""
    api.reply(*[Reply(200, extraction_reply(FIVE_OF_A).body, delay=0.2)] * 6)
    gate = RateGate(max_concurrency=2)

    started = time.monotonic()
    results = extract_all(api, gate, 6)

    assert all(result == FIVE_OF_A for result in results)
    assert time.monotonic() - started >= 0.6
    assert gate.in_flight == 0


def test_the_requests_per_minute_bucket_spaces_calls_out(api: FakeOpenAI, redis_url: str) -> None:
    """600 requests per minute allow a burst of 10, then one every 100 ms: 13 calls need at
    least 0.3 s."""
    gate = RateGate(max_concurrency=50, shared=limited(redis_url, rpm=600))

    started = time.monotonic()
    results = extract_all(api, gate, 13)

    assert all(result == FIVE_OF_A for result in results)
    assert time.monotonic() - started >= 0.28


def test_a_rate_limit_outlasting_the_budget_fails_the_message_with_the_reason(
    api: FakeOpenAI,
) -> None:
    """A 429 asking for longer than the budget: the message fails as rate limited, at once."""
    api.reply(Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "30"}))
    gate = RateGate(max_concurrency=1)

    [result] = extract_all(api, gate, 1, budget=3.0)

    assert isinstance(result, ExtractionFailure)
    assert result.reason.value == "rate_limited"
