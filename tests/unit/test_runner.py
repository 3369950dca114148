"""The worker's drain loop: drains run concurrently on one thread, at most ``max_in_flight`` at
a time, one at a time per conversation, and a wake-up for a conversation already draining
becomes one more run after it (never lost, never two drains of one phone in one process)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from wa_sessions.workers.runner import DrainRunner


@dataclass
class Calls:
    """A stand-in drain: records what ran, waits ``seconds`` (or for ``release``)."""

    seconds: float = 0.0
    release: threading.Event | None = None
    started: list[str] = field(default_factory=list)
    finished: Counter[str] = field(default_factory=Counter)
    concurrent: int = 0
    peak: int = 0
    per_conv_peak: Counter[str] = field(default_factory=Counter)
    _now: Counter[str] = field(default_factory=Counter)

    async def drain(self, context: str, conv: str) -> str:
        assert context == "ctx"
        self.started.append(conv)
        self.concurrent += 1
        self._now[conv] += 1
        self.peak = max(self.peak, self.concurrent)
        self.per_conv_peak[conv] = max(self.per_conv_peak[conv], self._now[conv])
        if self.release is not None:
            while not self.release.is_set():
                await asyncio.sleep(0.005)
        else:
            await asyncio.sleep(self.seconds)
        self.concurrent -= 1
        self._now[conv] -= 1
        self.finished[conv] += 1
        return conv


async def make_context() -> str:
    return "ctx"


def drain_loops() -> int:
    return sum(t.name == "drain-loop" and t.is_alive() for t in threading.enumerate())


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_drains_of_different_phones_wait_together_not_in_turn() -> None:
    """Forty phones whose drains each wait 0.3 s (an OpenAI call) run at once on one loop."""
    calls = Calls(seconds=0.3)
    runner = DrainRunner(calls.drain, make_context, max_in_flight=64)
    try:
        started = time.monotonic()
        for n in range(40):
            runner.submit(f"phone-{n}")
        wait_until(lambda: sum(calls.finished.values()) == 40)
        elapsed = time.monotonic() - started
    finally:
        runner.stop()

    assert calls.peak == 40
    assert elapsed < 40 * 0.3  # not one after another


def test_submit_blocks_while_max_in_flight_drains_run() -> None:
    """With two slots busy, a third submit waits until one drain ends."""
    release = threading.Event()
    calls = Calls(release=release)
    runner = DrainRunner(calls.drain, make_context, max_in_flight=2)
    third = threading.Thread(target=runner.submit, args=("c",))
    try:
        runner.submit("a")
        runner.submit("b")
        third.start()
        wait_until(lambda: len(calls.started) == 2)
        time.sleep(0.1)
        assert third.is_alive()  # blocked on a slot
        assert calls.started == ["a", "b"]
        release.set()
        third.join(timeout=5)
        wait_until(lambda: calls.finished["c"] == 1)
    finally:
        release.set()
        runner.stop()

    assert calls.peak <= 2


def test_wake_ups_for_a_draining_phone_become_one_more_run_after_it() -> None:
    """Five wake-ups while the phone drains: no second drain of it at once, and exactly one
    more run once the first ends (the entry that woke them is not left waiting)."""
    release = threading.Event()
    calls = Calls(release=release)
    runner = DrainRunner(calls.drain, make_context, max_in_flight=8)
    try:
        runner.submit("phone")
        wait_until(lambda: calls.started == ["phone"])
        for _ in range(5):
            runner.submit("phone")
        release.set()
        wait_until(lambda: calls.finished["phone"] == 2)
        time.sleep(0.05)
    finally:
        runner.stop()

    assert calls.finished["phone"] == 2
    assert calls.per_conv_peak["phone"] == 1
    assert runner.in_flight == 0


def test_a_failing_drain_frees_its_slot_and_the_loop_goes_on() -> None:
    """A drain that raises (Redis down) is logged; its slot is free and later drains run."""
    ran: list[str] = []

    async def drain(context: str, conv: str) -> None:
        ran.append(conv)
        if conv == "bad":
            raise ConnectionError("redis down")

    runner = DrainRunner(drain, make_context, max_in_flight=1)
    try:
        runner.submit("bad")
        runner.submit("good")
        wait_until(lambda: ran == ["bad", "good"])
    finally:
        runner.stop()


def test_run_waits_for_the_drain_and_returns_its_result() -> None:
    """``run`` is the synchronous path (operators' tasks, tests)."""
    calls = Calls(seconds=0.01)
    runner = DrainRunner(calls.drain, make_context)
    try:
        assert runner.run("phone") == "phone"
    finally:
        runner.stop()


def test_stop_cancels_drains_that_outlast_the_grace_period() -> None:
    """A drain stuck past the grace period is cancelled (its lease lapses; the re-drive pass
    wakes the phone again), and the loop thread ends."""
    loops_before = drain_loops()
    calls = Calls(seconds=30)
    runner = DrainRunner(calls.drain, make_context)
    runner.submit("stuck")
    wait_until(lambda: calls.started == ["stuck"])

    started = time.monotonic()
    runner.stop(grace_seconds=0.2)

    assert time.monotonic() - started < 5
    assert calls.finished["stuck"] == 0
    assert drain_loops() == loops_before


def test_a_context_that_cannot_be_built_fails_the_first_use() -> None:
    """Building the context (Redis clients) fails: the caller sees the error."""

    async def broken() -> str:
        raise RuntimeError("no redis")

    runner = DrainRunner(Calls().drain, broken)
    with pytest.raises(RuntimeError, match="no redis"):
        runner.submit("phone")
