"""The bounded retry loop shared by the OpenAI extractor and the Twilio sender, on a fake clock,
and the rate gate that turns an API's 429 into a pause for every call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from wa_sessions.retries import (
    CallFailure,
    CallSuccess,
    Classified,
    FailureReason,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
)


class Clock:
    """``monotonic`` and ``sleep`` that move a number instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None, *, retryable: bool = True) -> None:
        super().__init__("flaky")
        self.retry_after = retry_after
        self.retryable = retryable


def classify(exc: Exception) -> Classified:
    assert isinstance(exc, Flaky)
    return Classified(FailureReason.SERVER_ERROR, exc.retryable, "flaky", exc.retry_after)


def script(
    clock: Clock, outcomes: list[Flaky | str], cost: float = 1.0
) -> Callable[[], Awaitable[str]]:
    """A call that takes ``cost`` seconds and fails or answers per ``outcomes``."""
    calls = iter(outcomes)

    async def call() -> str:
        clock.now += cost
        outcome = next(calls)
        if isinstance(outcome, Flaky):
            raise outcome
        return outcome

    return call


def run(
    clock: Clock, outcomes: list[Flaky | str], policy: RetryPolicy, cost: float = 1.0
) -> object:
    return asyncio.run(
        call_with_retries(
            script(clock, outcomes, cost),
            classify,
            policy,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
        )
    )


POLICY = RetryPolicy(timeout_seconds=2, max_retries=2, budget_seconds=10, backoff_seconds=0.5)


def test_transient_failures_are_retried_until_success() -> None:
    """Two 5xx then an answer: three attempts, two backoffs."""
    clock = Clock()

    outcome = run(clock, [Flaky(), Flaky(), "ok"], POLICY)

    assert isinstance(outcome, CallSuccess)
    assert (outcome.value, outcome.attempts) == ("ok", 3)
    assert len(clock.sleeps) == 2
    assert 0.25 <= clock.sleeps[0] <= 0.5
    assert 0.5 <= clock.sleeps[1] <= 1.0


def test_retries_stop_at_max_retries() -> None:
    """After ``max_retries`` retries the last error is the failure."""
    clock = Clock()

    outcome = run(clock, [Flaky(), Flaky(), Flaky(), "never"], POLICY)

    assert isinstance(outcome, CallFailure)
    assert (outcome.reason, outcome.attempts) == (FailureReason.SERVER_ERROR, 3)


def test_retry_after_is_honoured_when_it_fits_the_budget() -> None:
    """A 429's Retry-After replaces the backoff."""
    clock = Clock()

    outcome = run(clock, [Flaky(retry_after=3.0), "ok"], POLICY)

    assert isinstance(outcome, CallSuccess)
    assert clock.sleeps == [3.0]


def test_a_wait_that_would_overrun_the_budget_ends_the_call_at_once() -> None:
    """A Retry-After longer than what is left, plus a timeout, is not waited for."""
    clock = Clock()

    outcome = run(clock, [Flaky(retry_after=30.0), "ok"], POLICY)

    assert isinstance(outcome, CallFailure)
    assert outcome.attempts == 1
    assert "budget" in outcome.detail
    assert clock.sleeps == []


def test_slow_attempts_stop_before_the_budget_is_exceeded() -> None:
    """Attempts that each use their whole timeout: only as many as fit in the budget."""
    clock = Clock()
    policy = RetryPolicy(timeout_seconds=4, max_retries=5, budget_seconds=10, backoff_seconds=0.5)

    outcome = run(clock, [Flaky()] * 6, policy, cost=4.0)

    assert isinstance(outcome, CallFailure)
    assert outcome.attempts == 2
    assert clock.now <= policy.budget_seconds


def test_permanent_failures_are_not_retried() -> None:
    """A non-retryable error (a 4xx, invalid output) ends the call after one attempt."""
    clock = Clock()

    outcome = run(clock, [Flaky(retryable=False), "ok"], POLICY)

    assert isinstance(outcome, CallFailure)
    assert outcome.attempts == 1


def test_a_budget_smaller_than_one_timeout_is_refused() -> None:
    """The budget must cover at least one attempt."""
    with pytest.raises(ValueError, match="budget"):
        RetryPolicy(timeout_seconds=10, budget_seconds=5)


def test_retry_after_header_values() -> None:
    """Seconds are honoured; dates, garbage and absurd values are not."""
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("86400") is None


class FakeGate:
    """A ``Gate`` that records pauses and admits on the fake clock once a pause has passed."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.paused_until = 0.0
        self.pauses: list[float] = []
        self.admitted = 0

    async def acquire(self, deadline: float) -> bool:
        if self.paused_until > deadline:
            return False
        if self.paused_until > self.clock.now:
            await self.clock.sleep(self.paused_until - self.clock.now)
        self.admitted += 1
        return True

    def release(self) -> None:
        pass

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.paused_until = self.clock.now + seconds


def classify_429(exc: Exception) -> Classified:
    assert isinstance(exc, Flaky)
    return Classified(
        FailureReason.RATE_LIMITED, True, "429", exc.retry_after, "429", pauses_gate=True
    )


def test_a_rate_limit_pauses_the_gate_and_does_not_use_up_the_retries() -> None:
    """Three 429s in a row with max_retries=2: each pauses the gate for its Retry-After, none
    counts as a retry, and the fourth attempt answers."""
    clock = Clock()
    gate = FakeGate(clock)
    outcomes: list[Flaky | str] = [Flaky(retry_after=1.0)] * 3 + ["ok"]

    outcome = asyncio.run(
        call_with_retries(
            script(clock, outcomes, cost=0.1),
            classify_429,
            POLICY,
            gate=gate,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
        )
    )

    assert isinstance(outcome, CallSuccess)
    assert (outcome.value, outcome.attempts) == ("ok", 4)
    assert gate.pauses == [1.0, 1.0, 1.0]
    assert gate.admitted == 4


def test_a_rate_limit_longer_than_the_budget_fails_the_call() -> None:
    """Rate-limit waits still fit in the budget: a phone never waits past it."""
    clock = Clock()
    gate = FakeGate(clock)

    outcome = asyncio.run(
        call_with_retries(
            script(clock, [Flaky(retry_after=4.0)] * 10, cost=0.1),
            classify_429,
            POLICY,
            gate=gate,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
        )
    )

    assert isinstance(outcome, CallFailure)
    assert outcome.reason is FailureReason.RATE_LIMITED
    assert "budget" in outcome.detail
    assert clock.now <= POLICY.budget_seconds
