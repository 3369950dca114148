"""The OpenAI extractor through the real ``openai`` SDK against a local fake of the Responses
API: structured output, timeouts, rate limits, server errors and bad output. (Image input, and
what may be fetched for it: ``tests/reliability/test_media_fetch.py``.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import pytest

from tests.fake_apis import (
    OPENAI_KEY,
    FakeOpenAI,
    Reply,
    extraction_reply,
    fake_openai,
    openai_response,
)
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest
from wa_sessions.orders.models import (
    ExtractionResult,
    ItemAction,
    ItemChange,
    OrderDetails,
    OrderItem,
)
from wa_sessions.orders.openai import OpenAIOrderExtractor
from wa_sessions.retries import FailureReason, RetryPolicy
from wa_sessions.statemachine.models import Message, MessageDirection, MessageType

FIVE_OF_A = ExtractionResult(
    found=True,
    changes=[ItemChange(action=ItemAction.ADD, name="Product A", quantity=5, unit="units")],
)


def extract(
    extractor: OpenAIOrderExtractor, request: ExtractionRequest
) -> ExtractionResult | ExtractionFailure:
    """One extraction on a fresh event loop; the extractor's HTTP clients are closed after."""

    async def run() -> ExtractionResult | ExtractionFailure:
        try:
            return await extractor.extract(request)
        finally:
            await extractor.close()

    return asyncio.run(run())


def recorder(into: list[float]) -> Callable[[float], Awaitable[None]]:
    """A ``sleep`` that records how long it was asked to wait, and returns at once."""

    async def sleep(seconds: float) -> None:
        into.append(seconds)

    return sleep


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with fake_openai(FIVE_OF_A) as server:
        yield server


def extractor(
    api: FakeOpenAI, *, policy: RetryPolicy | None = None, sleeps: list[float] | None = None
) -> OpenAIOrderExtractor:
    recorded = sleeps if sleeps is not None else []
    return OpenAIOrderExtractor(
        api_key=OPENAI_KEY,
        model="gpt-test",
        base_url=api.api_url,
        policy=policy or RetryPolicy(timeout_seconds=2, max_retries=2, budget_seconds=6),
        sleep=recorder(recorded),
    )


def message(
    content: str,
    *,
    media_url: str | None = None,
    direction: MessageDirection = MessageDirection.INBOUND,
) -> Message:
    metadata = {"media": [{"url": media_url, "content_type": "image/jpeg"}]} if media_url else {}
    return Message(
        id="SM" + content.encode().hex()[:32].ljust(32, "0"),
        content=content,
        message_type=MessageType.IMAGE if media_url else MessageType.TEXT,
        direction=direction,
        timestamp=datetime.now(UTC),
        metadata=metadata,
    )


def test_structured_output_is_parsed_into_the_result(api: FakeOpenAI) -> None:
    """A success: the SDK sends a strict JSON-schema request with key, model, history and
    current order; the answer comes back as an ``ExtractionResult``."""
    order = OrderDetails(items=[OrderItem(name="apples", quantity=3, unit="boxes")])
    history = [
        message("3 boxes of apples"),
        message("✅ Order received: 3 boxes of apples", direction=MessageDirection.OUTBOUND),
    ]

    result = extract(
        extractor(api), ExtractionRequest(message("I need 5 units of Product A"), history, order)
    )

    assert result == FIVE_OF_A
    [sent] = api.requests
    assert sent.path == "/v1/responses"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    body = sent.json()
    assert body["model"] == "gpt-test"
    assert body["text"]["format"]["name"] == "ExtractionResult"
    assert body["text"]["format"]["strict"] is True
    prompt = body["input"][0]["content"][0]["text"]
    assert '"name": "apples"' in prompt
    assert "customer: 3 boxes of apples" in prompt
    assert "business: ✅ Order received: 3 boxes of apples" in prompt
    assert prompt.endswith("I need 5 units of Product A")


def test_a_hung_api_times_out_within_the_budget(api: FakeOpenAI) -> None:
    """Attempts that hang are cut at the timeout; the call ends inside its budget."""
    api.reply(*[Reply(200, openai_response("{}"), delay=3.0) for _ in range(3)])
    policy = RetryPolicy(timeout_seconds=0.3, max_retries=2, budget_seconds=1.5)
    started = time.monotonic()

    result = extract(extractor(api, policy=policy), ExtractionRequest(message("5 of A")))

    assert isinstance(result, ExtractionFailure)
    assert result.reason is FailureReason.TIMEOUT
    assert result.attempts >= 2
    assert time.monotonic() - started < policy.budget_seconds


def test_a_429_with_retry_after_is_waited_out_then_succeeds(api: FakeOpenAI) -> None:
    """Rate limited: the Retry-After is honoured (within the budget) and the retry succeeds."""
    api.reply(Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "0.2"}))
    sleeps: list[float] = []

    result = extract(extractor(api, sleeps=sleeps), ExtractionRequest(message("5 of A")))

    assert result == FIVE_OF_A
    assert sleeps == [0.2]
    assert len(api.requests) == 2


def test_a_429_asking_for_longer_than_the_budget_gives_up_at_once(api: FakeOpenAI) -> None:
    """A Retry-After beyond the budget is not waited for: rate_limited after one attempt."""
    api.reply(Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "60"}))
    sleeps: list[float] = []

    result = extract(extractor(api, sleeps=sleeps), ExtractionRequest(message("5 of A")))

    assert isinstance(result, ExtractionFailure)
    assert (result.reason, result.attempts) == (FailureReason.RATE_LIMITED, 1)
    assert sleeps == []


def test_server_errors_are_retried_then_given_up(api: FakeOpenAI) -> None:
    """500 on every attempt: three attempts (max_retries=2), then server_error."""
    api.reply(*[Reply(500, {"error": {"message": "boom"}}) for _ in range(3)])

    result = extract(extractor(api), ExtractionRequest(message("5 of A")))

    assert isinstance(result, ExtractionFailure)
    assert (result.reason, result.attempts) == (FailureReason.SERVER_ERROR, 3)
    assert len(api.requests) == 3


def test_a_500_then_success_recovers(api: FakeOpenAI) -> None:
    """One transient 500 costs one retry."""
    api.reply(Reply(500, {"error": {"message": "boom"}}), extraction_reply(FIVE_OF_A))

    assert extract(extractor(api), ExtractionRequest(message("5 of A"))) == FIVE_OF_A


@pytest.mark.parametrize(
    "answer",
    [
        openai_response('{"found": "maybe"}'),
        openai_response("not json at all"),
        openai_response(json.dumps({**FIVE_OF_A.model_dump(mode="json"), "total_amount": "lots"})),
        openai_response("I can't help with that", refusal=True),
    ],
)
def test_output_that_does_not_fit_the_schema_is_invalid_output(
    api: FakeOpenAI, answer: dict[str, object]
) -> None:
    """Schema mismatches, non-JSON, impossible values and refusals: invalid_output, no retry."""
    api.reply(Reply(200, answer))

    result = extract(extractor(api), ExtractionRequest(message("5 of A")))

    assert isinstance(result, ExtractionFailure)
    assert (result.reason, result.attempts) == (FailureReason.INVALID_OUTPUT, 1)


def test_a_rejected_key_is_a_permanent_failure(api: FakeOpenAI) -> None:
    """401: not retried, reason other."""
    wrong = OpenAIOrderExtractor(
        api_key="sk-wrong", model="gpt-test", base_url=api.api_url, policy=RetryPolicy()
    )

    result = extract(wrong, ExtractionRequest(message("5 of A")))

    assert isinstance(result, ExtractionFailure)
    assert (result.reason, result.attempts) == (FailureReason.OTHER, 1)


def test_an_unreachable_api_is_a_connection_failure() -> None:
    """Nothing listening: connection errors, retried, then given up quickly."""
    with fake_openai() as gone:
        url = gone.api_url
    sleeps: list[float] = []
    unreachable = OpenAIOrderExtractor(
        api_key=OPENAI_KEY,
        model="gpt-test",
        base_url=url,
        policy=RetryPolicy(timeout_seconds=1, max_retries=2, budget_seconds=5),
        sleep=recorder(sleeps),
    )

    result = extract(unreachable, ExtractionRequest(message("5 of A")))

    assert isinstance(result, ExtractionFailure)
    assert (result.reason, result.attempts) == (FailureReason.CONNECTION, 3)
    assert len(sleeps) == 2
