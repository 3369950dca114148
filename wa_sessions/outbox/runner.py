"""The ``outbox`` process' loop: one task per consumer group reading the outbox stream
(XREADGROUP), handing batches to its consumer and acknowledging (XACK) only the ids the
consumer reports finished, plus a task that trims what every group has acknowledged.

Recovery: a batch is pending in its group from the moment it is read. Entries a consumer did
not finish (it raised, or left them out of its answer) are read again from this consumer's own
pending list after a backoff, in stream order. A consumer that acknowledges itself (the
events: it queues what it is handed and XACKs each entry later, once delivered) is not handed
its pending entries again after each batch: its own pending list is walked once, with a moving
cursor, at start and after losing Redis, and otherwise it reads new entries (``>``), so one
event waiting for its retry holds up no other. Entries of a consumer that died (kill -9,
a lost host) are taken over with XAUTOCLAIM once idle for ``claim_idle_ms``; a restart under the
same consumer name (the host's name by default) reads its own pending entries first. So an
entry is acknowledged at most once and handled at least once: consumers make their work
idempotent (the archive upserts; the events carry stable ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError, ResponseError

from wa_sessions.metrics.outbox import OUTBOX_ENTRIES
from wa_sessions.outbox.entry import MalformedEntry, OutboxConsumer, OutboxEntry
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.redis.outbox_store import OutboxStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """``OUTBOX_*`` settings: entries per batch, how long a read blocks, how long an entry stays
    pending in a dead consumer before another takes it over, the retry backoff (doubling up to
    its cap) and how often the stream is trimmed."""

    batch: int = 100
    block_ms: int = 1000
    claim_idle_ms: int = 60_000
    retry_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    trim_interval_seconds: float = 10.0


Item = tuple[str, dict[str, str] | None]


class ConsumerLoop:
    """One consumer group's reads, hand-overs and acknowledgements."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        stream: str,
        consumer: OutboxConsumer,
        policy: OutboxPolicy,
        consumer_name: str,
    ) -> None:
        self.client = client
        self.stream = stream
        self.consumer = consumer
        self.group = consumer.name
        self.policy = policy
        self.name = consumer_name
        self.acknowledges_itself = bool(getattr(consumer, "acknowledges_itself", False))
        #: Read this consumer's own pending entries before new ones (a restart, a retry),
        #: from ``cursor`` on: the walk moves past what it handed over.
        self.own_first = True
        self.cursor = "0"
        self.claim_cursor = "0-0"
        self.next_claim = 0.0

    async def ensure_group(self) -> None:
        """Creates the group from the stream's start (and the stream) unless it exists."""
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def step(self) -> bool:
        """Reads one batch and hands it over. False when this step found nothing to do or the
        consumer left entries unfinished (the caller backs off or blocks)."""
        if self.own_first:
            items = await self._read(self.cursor, block=False)
            if not items:
                self.own_first, self.cursor = False, "0"
                return True
        elif time.monotonic() >= self.next_claim:
            self.next_claim = time.monotonic() + self.policy.claim_idle_ms / 2000
            items = await self._claim()
            if not items:
                return True
        else:
            items = await self._read(">", block=True)
            if not items:
                return True
        finished = await self.handle(items)
        if finished:
            if self.own_first:
                self.cursor = items[-1][0]
        else:
            # Again from the start of the pending list, in stream order, after a backoff.
            self.own_first, self.cursor = True, "0"
        return finished

    def restart(self) -> None:
        """After losing Redis: a batch read but never handed over is pending in this consumer
        only, so the next step walks its pending list again."""
        self.own_first, self.cursor = True, "0"

    async def handle(self, items: Sequence[Item]) -> bool:
        """Hands the batch over, acknowledges what is done. True when every entry was."""
        entries: list[OutboxEntry] = []
        drop: list[str] = []
        for entry_id, fields in items:
            if not fields:
                drop.append(entry_id)
                OUTBOX_ENTRIES.labels(self.group, "missing").inc()
                continue
            try:
                entries.append(OutboxEntry.parse(entry_id, fields))
            except MalformedEntry:
                log.error("outbox: %s dropped a malformed entry %s", self.group, entry_id)
                OUTBOX_ENTRIES.labels(self.group, "malformed").inc()
                drop.append(entry_id)
        done: set[str] = set()
        raised = False
        if entries:
            try:
                done = set(await self.consumer.handle(entries)) & {e.id for e in entries}
            except Exception:
                raised = True
                log.exception("outbox: consumer %s failed a batch of %d", self.group, len(entries))
        acked = drop + [e.id for e in entries if e.id in done]
        if acked:
            await self.client.xack(self.stream, self.group, *acked)
        OUTBOX_ENTRIES.labels(self.group, "done").inc(len(done))
        left = len(entries) - len(done)
        if left and self.acknowledges_itself and not raised:
            # Taken over by the consumer (it acknowledges each one later), not unfinished.
            OUTBOX_ENTRIES.labels(self.group, "queued").inc(left)
            return True
        if left:
            OUTBOX_ENTRIES.labels(self.group, "retried").inc(left)
        return left == 0

    async def _read(self, start: str, *, block: bool) -> list[Item]:
        reply = await self.client.xreadgroup(
            self.group,
            self.name,
            {self.stream: start},
            count=self.policy.batch,
            block=self.policy.block_ms if block else None,
        )
        return _items(reply)

    async def _claim(self) -> list[Item]:
        reply = await self.client.xautoclaim(
            self.stream,
            self.group,
            self.name,
            self.policy.claim_idle_ms,
            start_id=self.claim_cursor,
            count=self.policy.batch,
        )
        # The cursor moves on through the pending list; "0-0" once it went round.
        self.claim_cursor = str(reply[0])
        return [(str(i), dict(f) if f else None) for i, f in reply[1]]

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.policy.retry_seconds
        while not stop.is_set():
            try:
                await self.ensure_group()
                while not stop.is_set():
                    if await self.step():
                        backoff = self.policy.retry_seconds
                        continue
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, self.policy.retry_max_seconds)
            except (RedisError, OSError):
                log.warning("outbox: %s lost Redis; retrying in %.1fs", self.group, backoff)
                self.restart()
                await _wait(stop, backoff)
                backoff = min(backoff * 2, self.policy.retry_max_seconds)


def _items(reply: Any) -> list[Item]:
    """XREADGROUP's entries, whichever protocol answered (RESP2 lists, RESP3 a map)."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else [r[1] for r in reply]
    items: list[Item] = []
    for entries in streams:
        # RESP3 wraps each stream's entries in one more list.
        if (
            entries
            and isinstance(entries[0], list)
            and entries[0]
            and isinstance(entries[0][0], (list, tuple))
        ):
            entries = entries[0]
        for entry_id, fields in entries:
            items.append((str(entry_id), dict(fields) if fields else None))
    return items


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


class OutboxRunner:
    """Runs every consumer's loop and the trim until ``stop`` is set."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        store: OutboxStore,
        consumers: Sequence[OutboxConsumer],
        policy: OutboxPolicy,
        *,
        consumer_name: str,
        keys: Keys | None = None,
    ) -> None:
        stream = (keys or store.keys).outbox
        self.store = store
        self.policy = policy
        self.loops = [ConsumerLoop(client, stream, c, policy, consumer_name) for c in consumers]

    async def trim(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.store.trim_outbox)
            except (RedisError, OSError):
                log.warning("outbox: trimming failed (Redis); next pass later")
            await _wait(stop, self.policy.trim_interval_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Starts the consumers that have a loop of their own (``start``), runs until ``stop``,
        then closes them (``close``)."""
        consumers = [loop.consumer for loop in self.loops]
        try:
            for consumer in consumers:
                start = getattr(consumer, "start", None)
                if start is not None:
                    await start()
            async with asyncio.TaskGroup() as tasks:
                for loop in self.loops:
                    tasks.create_task(loop.run(stop))
                tasks.create_task(self.trim(stop))
        finally:
            for consumer in consumers:
                close = getattr(consumer, "close", None)
                if close is not None:
                    await close()
