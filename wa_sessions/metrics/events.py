"""Session ends, counted from the store's ``events:ended`` list rather than where they happen.

A session ends in a worker's drain, the scheduler's sweep, an operator task or a read that
finds it idle; the Lua ``end_session`` records each end once in Redis, and this job (run by
the scheduler) turns them into counters and histograms, so every path is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from wa_sessions.metrics import (
    SESSION_DURATION,
    SESSION_MESSAGES,
    SESSION_OUTCOMES,
    SESSIONS_ENDED,
)
from wa_sessions.statemachine.steps import EndedEvent

#: Events taken per Redis round trip.
BATCH = 1000


class EndedEventSource(Protocol):
    """The store's consuming read of session-end events (each is handed to one caller)."""

    def pop_ended_events(self, limit: int = ...) -> Sequence[EndedEvent]: ...


def observe(event: EndedEvent) -> None:
    """Counts one ended session and observes its duration and message count."""
    outcome = event.status if event.status in SESSION_OUTCOMES else "other"
    SESSIONS_ENDED.labels(outcome).inc()
    SESSION_DURATION.labels(outcome).observe(max(0.0, event.duration_seconds))
    SESSION_MESSAGES.labels(outcome).observe(max(0, event.message_count))


def observe_ended_sessions(
    store: EndedEventSource,
    *,
    batch: int = BATCH,
    on_ended: Callable[[Sequence[EndedEvent]], None] | None = None,
) -> int:
    """Takes every waiting session-end event and observes it, then hands each batch to
    ``on_ended`` (the scheduler queues the sessions' analyses). Returns how many."""
    total = 0
    while True:
        events = store.pop_ended_events(batch)
        for event in events:
            observe(event)
        if on_ended is not None and events:
            on_ended(events)
        total += len(events)
        if len(events) < batch:
            return total
