"""The outbox consumer of the ``events`` group: each entry becomes a signed webhook to the
business's backend, retried with backoff for up to ``EVENTS_RETRY_HOURS``, in order per
session (docs/EVENTS.md).

``handle`` only queues the entries it is handed (``RedisEventStore.accept``: behind their
session's earlier events, idempotently) and returns none of them: an entry is acknowledged
later, by the script that records it delivered or given up. Delivery runs in this consumer's
own loop (``start``), which claims the heads that are due, a lease each, so the schedule, the
attempt counts and the per-session order live in Redis: a restart, or a second outbox process,
goes on where the first stopped. At least once: a crash between the receiver's 2xx and the
record sends that event again, with the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from wa_sessions.events.schema import MalformedEntry, event_body, event_from_entry, event_id
from wa_sessions.events.sender import Attempt, Verdict, WebhookSender
from wa_sessions.events.store import GROUP, Claimed, RedisEventStore
from wa_sessions.metrics.outgoing_events import EVENT_DELIVERY_LATENCY, EVENTS

log = logging.getLogger(__name__)

#: How long an attempt's lease outlives its timeout (a slow Redis write after the answer).
LEASE_MARGIN_SECONDS = 30.0
#: The longest wait between two attempts of one event.
MAX_BACKOFF_SECONDS = 3600.0


class OutboxEntryLike(Protocol):
    """What ``handle`` reads of an outbox entry (``wa_sessions.outbox``'s entry type)."""

    @property
    def id(self) -> str: ...

    @property
    def session_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    timeout_seconds: float = 10.0
    retry_window_seconds: float = 86_400.0
    backoff_seconds: float = 5.0
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS

    def backoff(self, attempts: int) -> float:
        """The wait after attempt number ``attempts`` failed: doubling, jittered 50-100%."""
        ceiling = min(self.backoff_seconds * 2.0 ** (attempts - 1), self.max_backoff_seconds)
        return ceiling * (0.5 + random.random() / 2)

    @property
    def lease_ms(self) -> int:
        return int((self.timeout_seconds + LEASE_MARGIN_SECONDS) * 1000)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class EventsConsumer:
    """Group ``events``: queues entries, delivers them from its own loop."""

    name = GROUP
    #: For the outbox runner: entries this consumer is handed and does not return are its own
    #: (queued in Redis, acknowledged by its delivery loop), not unfinished work to hand it
    #: again. A runner that re-read its pending list from the start after every such batch
    #: would never read new entries while one event is being retried.
    acknowledges_itself = True

    def __init__(
        self,
        store: RedisEventStore,
        sender: WebhookSender,
        policy: DeliveryPolicy,
        *,
        max_in_flight: int = 16,
        clock_ms: Callable[[], int] = _wall_ms,
        poll_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.sender = sender
        self.policy = policy
        self.max_in_flight = max_in_flight
        self.clock_ms = clock_ms
        self.poll_seconds = poll_seconds
        self._loop_task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._closing = False

    async def start(self) -> None:
        """Creates the group if missing and starts the delivery loop (once)."""
        if self._loop_task is None:
            await self.store.ensure_group()
            self._loop_task = asyncio.create_task(self._deliver_forever(), name="events")

    async def handle(self, entries: Sequence[OutboxEntryLike]) -> list[str]:
        """Queues each entry behind its session's earlier events; none is finished here (the
        delivery loop acknowledges each when delivered or given up)."""
        await self.start()
        now = self.clock_ms()
        for entry in entries:
            await self.store.accept(entry.id, entry.session_id or "-", now)
        self._wake.set()
        return []

    async def close(self) -> None:
        """Stops the loop and the attempts in flight (their leases lapse: they are sent again,
        by this process after a restart or by another one) and closes the HTTP session."""
        # The flag as well as the cancel: a cancel that lands in a Redis call can be lost there,
        # and the loop would then run on.
        self._closing = True
        self._wake.set()
        tasks = [*self._in_flight, *([self._loop_task] if self._loop_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop_task = None
        self._closing = False
        await self.sender.close()

    async def _deliver_forever(self) -> None:
        while not self._closing:
            self._wake.clear()
            delay = self.poll_seconds
            try:
                free = self.max_in_flight - len(self._in_flight)
                now = self.clock_ms()
                if free > 0:
                    for claimed in await self.store.claim(now, self.policy.lease_ms, free):
                        self._spawn(claimed)
                    due = await self.store.next_due_ms()
                    if due is not None:
                        delay = min(delay, max(0.0, (due - now) / 1000))
            except Exception:  # Redis away: try again at the next poll
                log.warning("events: claiming due events failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.005)):
                    await self._wake.wait()

    def _spawn(self, claimed: Claimed) -> None:
        task = asyncio.create_task(self._deliver(claimed))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            # The lease lapses and the attempt is made again.
            log.warning("events: delivery step failed", exc_info=task.exception())

    async def _deliver(self, claimed: Claimed) -> None:
        fields = await self.store.read_entry(claimed.entry_id)
        try:
            if fields is None:
                raise MalformedEntry("not in the outbox any more")
            event = event_from_entry(claimed.entry_id, fields)
        except MalformedEntry as exc:
            await self._give_up(claimed, "invalid", f"invalid entry: {exc}", None, fields)
            return
        body = event_body(event)
        attempt = await self.sender.send(event.id, body)
        attempts = claimed.attempts + 1
        now = self.clock_ms()
        if attempt.verdict is Verdict.DELIVERED:
            await self.store.finish(claimed.entry_id, claimed.session_id, now)
            EVENTS.labels(event.type, "delivered").inc()
            latency = now / 1000 - event.timestamp.timestamp()
            EVENT_DELIVERY_LATENCY.labels(event.type).observe(max(0.0, latency))
            return
        if attempt.verdict is Verdict.GIVE_UP:
            await self._give_up(claimed, event.type, attempt.reason, body, None, attempts)
            return
        await self._retry(claimed, event.type, attempt, body, attempts, now)

    async def _retry(
        self, claimed: Claimed, kind: str, attempt: Attempt, body: str, attempts: int, now: int
    ) -> None:
        wait = max(self.policy.backoff(attempts), attempt.retry_after_seconds or 0.0)
        next_ms = now + int(wait * 1000)
        if next_ms > claimed.first_ms + self.policy.retry_window_seconds * 1000:
            reason = f"retry window over after {attempts} attempts; last: {attempt.reason}"
            await self._give_up(claimed, kind, reason, body, None, attempts)
            return
        await self.store.reschedule(claimed.entry_id, attempts, next_ms)
        EVENTS.labels(kind, "retried").inc()
        log.info(
            "events: %s %s attempt %d failed (%s); next in %.1f s",
            kind,
            event_id(claimed.entry_id),
            attempts,
            attempt.reason,
            wait,
        )

    async def _give_up(
        self,
        claimed: Claimed,
        kind: str,
        reason: str,
        body: str | None,
        fields: dict[str, str] | None,
        attempts: int = 0,
    ) -> None:
        now = self.clock_ms()
        record: dict[str, Any] = {
            "id": event_id(claimed.entry_id),
            "type": kind,
            "session_id": claimed.session_id,
            "reason": reason,
            "attempts": attempts,
            "at": datetime.fromtimestamp(now / 1000, UTC).isoformat(),
            "body": body,
        }
        if fields is not None:
            record["entry"] = fields
        await self.store.finish(claimed.entry_id, claimed.session_id, now, given_up=record)
        EVENTS.labels(kind, "given_up").inc()
        log.warning("events: gave up %s (%s): %s", event_id(claimed.entry_id), kind, reason)
