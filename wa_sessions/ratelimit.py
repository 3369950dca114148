"""Admission of calls to a rate-limited API (OpenAI): how many run at once in this process, how
many start per minute across the deployment, and the pause the API asked for with a 429.

Without it, a worker process that keeps hundreds of extractions in flight turns an OpenAI rate
limit into hundreds of failed messages: every call hits the 429, backs off on its own and hits
it again. With it, the first 429 pauses the gate (for this process at once, for the others
through Redis), every call waits at the gate instead of at OpenAI, and the pipeline slows down
to what the account may send instead of failing messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)


class SharedLimit(Protocol):
    """The deployment-wide part of a gate (``statemachine.redis.limits.RedisSharedLimit``)."""

    async def take(self) -> float:
        """Takes one request token: 0.0 when taken, else seconds to wait before asking again."""
        ...

    async def pause(self, seconds: float) -> None: ...


class RateGate:
    """``retries.Gate`` for one API: a per-process concurrency cap, the deployment's shared
    limit (optional) and a local copy of the pause, so that a paused process does not ask
    Redis for every waiting call."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        shared: SharedLimit | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.shared = shared
        self._slots: asyncio.Semaphore | None = None
        self._paused_until = 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        # Pauses reported to Redis, held until done (the event loop keeps tasks weakly).
        self._reports: set[asyncio.Task[None]] = set()
        #: Attempts admitted and not yet released (a gauge for tests and metrics).
        self.in_flight = 0

    async def acquire(self, deadline: float) -> bool:
        if self._slots is None:  # created on the loop that uses it
            self._slots = asyncio.Semaphore(self.max_concurrency)
        while True:
            if not await self._wait_for_pause_and_token(deadline):
                return False
            remaining = deadline - self._monotonic()
            if remaining < 0:
                return False
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=remaining)
            except TimeoutError:
                return False
            if self._paused_until <= self._monotonic():
                self.in_flight += 1
                return True
            # A 429 paused the gate while this call waited for its slot: wait it out too.
            self._slots.release()

    async def _wait_for_pause_and_token(self, deadline: float) -> bool:
        while True:
            now = self._monotonic()
            wait = self._paused_until - now
            if wait <= 0 and self.shared is not None:
                wait = await self.shared.take()
            if wait <= 0:
                return True
            if now + wait > deadline:
                return False
            await self._sleep(wait)

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()
            self.in_flight -= 1

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._monotonic() + seconds)
        if self.shared is not None:
            task = asyncio.ensure_future(self.shared.pause(seconds))
            self._reports.add(task)
            task.add_done_callback(self._reported)

    def _reported(self, task: asyncio.Task[None]) -> None:
        self._reports.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Redis unreachable: this process still pauses; the others learn from their 429s.
            log.warning("could not share a rate-limit pause: %s", task.exception())
