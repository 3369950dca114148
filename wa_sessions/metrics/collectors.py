"""Values read from Redis at scrape time: no process can count them, every process changes them.

Active sessions, waiting inboxes and Dramatiq's queue depth are the state of the shared Redis,
so they are read there (a few O(1) commands per scrape) instead of being kept as per-process
gauges that drift as processes restart. Every web process reports the same cluster-wide values:
aggregate them with ``max``, not ``sum``. When Redis does not answer, the scrape still succeeds
with ``wa_sessions_redis_up 0`` and without the other samples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import redis
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wa_sessions.workers.queues import QueueKeys

log = logging.getLogger(__name__)

#: States of a Dramatiq Redis queue, each one Redis key (``QueueKeys``): ready, delayed
#: (retries waiting for their backoff) and dead-lettered (retries exhausted).
QUEUE_STATES = ("ready", "delayed", "dead")


class SessionState(Protocol):
    """What the collector reads: ``RedisSessionStore``'s counters and its Redis client."""

    @property
    def client(self) -> redis.Redis: ...

    def count_active(self) -> int: ...

    def pending_summary(self) -> tuple[int, int | None]: ...

    def count_taken_over(self) -> int: ...


def queue_depths(client: redis.Redis, queues: Sequence[QueueKeys]) -> dict[tuple[str, str], int]:
    """Messages per (queue, state) of Dramatiq's Redis broker, read in one round trip."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue.ready)
        pipe.llen(queue.delayed)
        pipe.zcard(queue.dead)
    counts = iter(pipe.execute())
    return {(queue.queue, state): int(next(counts)) for queue in queues for state in QUEUE_STATES}


class RedisStateCollector(Collector):
    """``wa_sessions_sessions_active``, ``wa_sessions_sessions_taken_over``,
    ``wa_sessions_inbox_*``, ``wa_sessions_queue_messages``
    and ``wa_sessions_redis_up``, read from Redis when Prometheus scrapes."""

    def __init__(
        self,
        store: SessionState,
        *,
        queues: Sequence[QueueKeys],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.queues = tuple(queues)
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        # Nothing to describe up front: describing would otherwise run collect (reach Redis).
        return iter(())

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "wa_sessions_redis_up",
            "1 when Redis answered this scrape's reads, else 0 (and the Redis-backed samples "
            "are left out).",
        )
        try:
            active = self.store.count_active()
            waiting, oldest_ms = self.store.pending_summary()
            taken_over = self.store.count_taken_over()
            depths = queue_depths(self.store.client, self.queues)
        except Exception:  # a scrape must succeed whatever Redis does; the gauge says it failed
            log.warning("metrics: Redis did not answer the scrape's reads", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "wa_sessions_sessions_active",
            "Sessions active now, across all processes (the active index in Redis).",
            value=active,
        )
        yield GaugeMetricFamily(
            "wa_sessions_sessions_taken_over",
            "Active sessions an operator has taken over (automatic replies off), across all "
            "processes (the takeover index in Redis).",
            value=taken_over,
        )
        yield GaugeMetricFamily(
            "wa_sessions_inbox_conversations_waiting",
            "Conversations whose inbox holds accepted messages not yet applied.",
            value=waiting,
        )
        oldest_age = 0.0 if oldest_ms is None else max(0.0, self.clock() - oldest_ms / 1000)
        yield GaugeMetricFamily(
            "wa_sessions_inbox_oldest_waiting_seconds",
            "Age of the oldest accepted, not yet applied inbox entry (0 when none waits).",
            value=oldest_age,
        )
        queue = GaugeMetricFamily(
            "wa_sessions_queue_messages",
            "Dramatiq messages in the Redis broker, by queue and state (ready, delayed, dead).",
            labels=["queue", "state"],
        )
        for (name, state), count in depths.items():
            queue.add_metric([name, state], count)
        yield queue
