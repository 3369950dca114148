"""Metrics of the outgoing events (``wa_sessions/events``): attempts' outcomes and delivery time,
counted by the outbox process, and the backlog, read from Redis at scrape time by the web
process (like ``collectors``: every process changes it, none could count it). Labels: the event
type (five, plus ``invalid`` for an outbox entry that makes no event) and the outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import redis
from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wa_sessions.statemachine.redis.keys import Keys

log = logging.getLogger(__name__)

#: ``type`` values of the event metrics (``invalid``: an entry that makes no event).
EVENT_TYPES = (
    "session.started",
    "session.completed",
    "session.expired",
    "order.updated",
    "message.failed",
    "invalid",
)
#: ``outcome`` values of ``EVENTS``: one per attempt.
EVENT_OUTCOMES = ("delivered", "retried", "given_up")

# From a quick 2xx to a receiver that was down for most of the retry window (a day).
_DELIVERY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DELIVERY_BUCKETS += (300.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0, 172800.0)

EVENTS = Counter(
    "wa_sessions_events_total",
    "Outgoing event attempts by type and outcome: delivered (2xx), retried (5xx, 408, 429, "
    "timeout, connection error; another attempt scheduled), given_up (4xx, the retry window "
    "over, or an outbox entry that makes no event: type invalid).",
    ["type", "outcome"],
)
EVENT_DELIVERY_LATENCY = Histogram(
    "wa_sessions_event_delivery_seconds",
    "Time from the change (the outbox entry's time) to the receiver's 2xx, by event type.",
    ["type"],
    buckets=_DELIVERY_BUCKETS,
)


def initialise_series() -> None:
    for kind in EVENT_TYPES:
        for outcome in EVENT_OUTCOMES:
            EVENTS.labels(kind, outcome)
        EVENT_DELIVERY_LATENCY.labels(kind)


class EventsBacklogCollector(Collector):
    """``wa_sessions_events_pending``, ``wa_sessions_events_oldest_pending_seconds`` and
    ``wa_sessions_events_given_up``, read from Redis when Prometheus scrapes (three O(1)
    reads). Left out when Redis does not answer (``wa_sessions_redis_up`` says so)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        group: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.keys = keys
        self.group = group
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hlen(self.keys.events_state)
            pipe.zcard(self.keys.events_given_up_at)
            pipe.xpending(self.keys.outbox, self.group)
            pending, given_up, summary = pipe.execute(raise_on_error=False)
            pending, given_up = int(pending), int(given_up)
        except Exception:  # a scrape must succeed whatever Redis does
            log.warning("metrics: Redis did not answer the events backlog reads", exc_info=True)
            return
        oldest = 0.0
        # No group yet (nothing sent so far) answers an error: nothing is pending then.
        if isinstance(summary, dict) and summary.get("min"):
            first = summary["min"]
            first = first.decode() if isinstance(first, bytes) else str(first)
            oldest_ms = int(first.partition("-")[0])
            oldest = max(0.0, self.clock() - oldest_ms / 1000)
        yield GaugeMetricFamily(
            "wa_sessions_events_pending",
            "Outgoing events taken from the outbox and not yet delivered or given up.",
            value=pending,
        )
        yield GaugeMetricFamily(
            "wa_sessions_events_oldest_pending_seconds",
            "Age of the oldest outbox entry the events group has not acknowledged (0 when "
            "none): how far the business's backend is behind.",
            value=oldest,
        )
        yield GaugeMetricFamily(
            "wa_sessions_events_given_up",
            "Given-up events on record (replayable with wa-sessions-enqueue replay-event).",
            value=given_up,
        )
