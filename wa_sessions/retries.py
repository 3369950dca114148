"""Calls to external APIs (OpenAI, Twilio) inside a bounded retry budget.

A per-phone drain waits for these calls while the phone's next messages queue behind it, so a
call's whole cost, waits included, is capped: an attempt only starts when its full timeout still
fits in the budget, and a ``Retry-After`` longer than what is left ends the call at once. The
SDKs' own retries are turned off so this is the only retry loop.

Calls are coroutines: a worker process keeps hundreds of them in flight on one event loop, so
the time OpenAI and Twilio take to answer costs no thread. Before each attempt the call passes
its ``Gate`` (``ratelimit.RateGate``: a per-process concurrency cap, a deployment-wide request
rate, and the pause a 429 asked for); a 429 pauses the gate for every call of the process and
the deployment, and is retried after the pause without using up one of ``max_retries``, as long
as the budget allows.

Written by hand rather than with tenacity or stamina: the stop rule needs the next attempt's
full timeout, the server's ``Retry-After`` and the gate's admission wait inside one deadline,
and rate-limit retries apart from the retry count; both libraries would need all three as
custom callbacks around the same forty lines.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class FailureReason(StrEnum):
    """Why an external call gave up (the ``reason`` label of the failure metrics)."""

    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    INVALID_OUTPUT = "invalid_output"
    CONNECTION = "connection"
    REJECTED = "rejected"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long one call may take in total and how it retries."""

    #: One attempt (connect and each read); the SDK clients are built with it.
    timeout_seconds: float = 10.0
    #: Retries after the first attempt.
    max_retries: int = 2
    #: The whole call, attempts and waits included.
    budget_seconds: float = 25.0
    #: First backoff; doubled per retry up to ``max_backoff_seconds``, with jitter.
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0 or self.max_retries < 0 or self.backoff_seconds < 0:
            raise ValueError("timeout must be positive, retries and backoff not negative")
        if self.budget_seconds < self.timeout_seconds:
            raise ValueError("the retry budget must cover at least one attempt's timeout")

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0-based): exponential, jittered 50-100%."""
        ceiling = min(self.backoff_seconds * 2.0**retry, self.max_backoff_seconds)
        return ceiling * (0.5 + random.random() / 2)


@dataclass(frozen=True, slots=True)
class Classified:
    """An exception, judged: why it failed, whether another attempt may help, how long the
    server asked us to wait, and a short description safe to store (no secrets, no bodies)."""

    reason: FailureReason
    retryable: bool
    detail: str
    retry_after_seconds: float | None = None
    code: str | None = None
    #: The gated API itself asked us to slow down (its 429): pause the gate for every call,
    #: and do not count the attempt as a retry.
    pauses_gate: bool = False


@dataclass(frozen=True, slots=True)
class CallFailure:
    """A call that gave up: the last error's classification, attempts made, time spent."""

    reason: FailureReason
    detail: str
    attempts: int
    elapsed_seconds: float
    code: str | None = None


@dataclass(frozen=True, slots=True)
class CallSuccess(Generic[T]):
    value: T
    attempts: int
    elapsed_seconds: float


class Gate(Protocol):
    """Admission of attempts at one external API (``ratelimit.RateGate``)."""

    async def acquire(self, deadline: float) -> bool:
        """Waits until an attempt may start; False when that would be after ``deadline``
        (``time.monotonic`` seconds). A True must be paired with ``release``."""
        ...

    def release(self) -> None: ...

    def pause(self, seconds: float) -> None:
        """The API asked (429) that no attempt start for ``seconds``."""
        ...


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    classify: Callable[[Exception], Classified],
    policy: RetryPolicy,
    *,
    gate: Gate | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> CallSuccess[T] | CallFailure:
    """Runs ``call`` until it returns, fails permanently, runs out of retries or would overrun
    the budget. Never raises what ``call`` raises: every exception is classified. Rate limits
    (429) do not count as retries: the gate is paused for ``Retry-After`` (or the backoff) and the
    attempt is made again when it reopens, while the budget lasts."""
    started = monotonic()
    retry = attempts = 0
    last: Classified | None = None
    while True:
        if gate is not None:
            latest_start = started + policy.budget_seconds - policy.timeout_seconds
            if not await gate.acquire(latest_start):
                judged = last or Classified(
                    FailureReason.RATE_LIMITED, True, "rate limit: no request slot in time"
                )
                return _failure(judged, attempts, monotonic() - started, budget_spent=True)
        attempts += 1
        try:
            value = await call()
        except Exception as exc:
            error: Exception | None = exc
        else:
            error = None
        finally:
            if gate is not None:
                gate.release()
        if error is None:
            return CallSuccess(value, attempts, monotonic() - started)
        judged = last = classify(error)
        elapsed = monotonic() - started
        rate_limited = judged.pauses_gate
        if not judged.retryable or (retry >= policy.max_retries and not rate_limited):
            return _failure(judged, attempts, elapsed)
        wait = (
            judged.retry_after_seconds
            if judged.retry_after_seconds is not None
            else policy.backoff(retry)
        )
        if elapsed + wait + policy.timeout_seconds > policy.budget_seconds:
            return _failure(judged, attempts, elapsed, budget_spent=True)
        if rate_limited and gate is not None:
            gate.pause(wait)  # the next acquire waits it out, with every other call
        else:
            await sleep(wait)
        if not rate_limited:
            retry += 1


def _failure(
    judged: Classified, attempts: int, elapsed: float, *, budget_spent: bool = False
) -> CallFailure:
    detail = judged.detail
    if budget_spent:
        detail += "; retry budget spent"
    return CallFailure(judged.reason, detail, attempts, elapsed, judged.code)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (dates are not worth honouring
    within a budget of seconds)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 3600 else None
