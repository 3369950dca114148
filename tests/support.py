"""Small helpers shared by test modules (fixtures live in conftest.py files)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dramatiq
from dramatiq.brokers.redis import RedisBroker


@contextmanager
def running_worker(broker: RedisBroker, threads: int = 4) -> Iterator[dramatiq.Worker]:
    """An in-process Dramatiq worker on ``broker``, stopped (and joined) on exit."""
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def poll(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Waits for ``condition`` with a deadline instead of a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)
