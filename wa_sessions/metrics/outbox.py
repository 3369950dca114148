"""Metrics of the outbox (issue #16): entries each consumer group finished, retried or dropped
as malformed (counted by the ``outbox`` process), and the backlog (stream length, pending and
oldest unacknowledged entry per group), read from Redis at scrape time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client import Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wa_sessions.statemachine.redis.outbox_store import OutboxBacklog

log = logging.getLogger(__name__)

#: ``outcome`` values of ``OUTBOX_ENTRIES``: acknowledged after the consumer's work, left
#: pending to be retried (the consumer did not finish it or raised), queued (taken by a
#: consumer that acknowledges each entry itself later: the events), malformed (acknowledged
#: without being handed over), missing (trimmed or erased before it was handled).
OUTBOX_OUTCOMES = ("done", "retried", "queued", "malformed", "missing")

OUTBOX_ENTRIES = Counter(
    "wa_sessions_outbox_entries_total",
    "Outbox entries handled by the outbox process, by consumer group (archive, events) and "
    "outcome (done, retried, queued, malformed, missing).",
    ["consumer", "outcome"],
)


class BacklogReads(Protocol):
    def outbox_backlog(self, groups: Sequence[str] = ()) -> OutboxBacklog: ...


class OutboxBacklogCollector(Collector):
    """``wa_sessions_outbox_entries``, ``wa_sessions_outbox_pending`` and
    ``wa_sessions_outbox_oldest_unacknowledged_seconds``, read from Redis at each scrape (one
    script). ``groups``: the consumer groups the deployment runs, reported before they exist."""

    def __init__(
        self,
        store: BacklogReads,
        groups: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.groups = tuple(groups)
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            backlog = self.store.outbox_backlog(self.groups)
        except Exception:  # the Redis collector reports the outage (wa_sessions_redis_up)
            log.warning("metrics: the outbox backlog could not be read", exc_info=True)
            return
        yield GaugeMetricFamily(
            "wa_sessions_outbox_entries",
            "Entries in the outbox stream (trimmed once every consumer group acknowledged them).",
            value=backlog.length,
        )
        pending = GaugeMetricFamily(
            "wa_sessions_outbox_pending",
            "Outbox entries delivered to a consumer group and not acknowledged yet, by group.",
            labels=["consumer"],
        )
        oldest = GaugeMetricFamily(
            "wa_sessions_outbox_oldest_unacknowledged_seconds",
            "Age of the oldest outbox entry a consumer group has not acknowledged (pending or "
            "not yet read), by group; 0 when it is up to date.",
            labels=["consumer"],
        )
        for group in backlog.groups:
            pending.add_metric([group.group], group.pending)
            first_ms = group.oldest_ms()
            age = 0.0 if first_ms is None else max(0.0, self.clock() - first_ms / 1000)
            oldest.add_metric([group.group], age)
        yield pending
        yield oldest
