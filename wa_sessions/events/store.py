"""The outgoing events' state in Redis: each session's queue of undelivered events, the retry
schedule, the given-up records, and the outbox reads (``lua/events_*.lua``).

Everything a delivery needs to go on after a restart lives here, not in the process: which
entries were taken, in what order per session, how many attempts each had and when the next
is due. An entry leaves the outbox's ``events`` group (XACK) in the same script that takes it
out of its session's queue, so a crash never acknowledges an event that was not finished, nor
finishes one twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions

from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys

#: The outbox's consumer group of the events (``XGROUP CREATE ... MKSTREAM`` from ``0``).
GROUP = "events"
#: Given-up records kept at most (the oldest go first).
GIVEN_UP_KEEP = 100_000


@dataclass(frozen=True, slots=True)
class Claimed:
    """An entry leased for one attempt, with its delivery state."""

    entry_id: str
    session_id: str
    #: Attempts made before this one.
    attempts: int
    #: The first attempt (epoch ms): the retry window starts there.
    first_ms: int


class RedisEventStore:
    """The events' keys and scripts over one async client (``decode_responses=True``)."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, group: str = GROUP) -> None:
        self.client = client
        self.keys = keys
        self.group = group
        self._scripts: dict[str, Any] = {
            name: client.register_script(scripts.source(name, keys))
            for name in ("events_accept", "events_claim", "events_retry", "events_finish")
        }

    async def _run(self, name: str, keys: dict[str, str], **args: Any) -> Any:
        key_values, arg_values = scripts.call(name, keys, **args)
        return await self._scripts[name](keys=key_values, args=arg_values)

    async def ensure_group(self) -> None:
        """The events group on the outbox, created from its start if missing."""
        try:
            await self.client.xgroup_create(self.keys.outbox, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def accept(self, entry_id: str, session_id: str, now_ms: int) -> bool:
        """Queues an entry behind its session's earlier ones; False when it was queued already."""
        keys = {
            "state": self.keys.events_state,
            "due": self.keys.events_due,
            "queue": self.keys.events_queue(session_id),
        }
        taken = await self._run(
            "events_accept", keys, entry_id=entry_id, session_id=session_id, now_ms=now_ms
        )
        return bool(taken)

    async def claim(self, now_ms: int, lease_ms: int, limit: int) -> list[Claimed]:
        keys = {"due": self.keys.events_due, "state": self.keys.events_state}
        flat = await self._run("events_claim", keys, now_ms=now_ms, lease_ms=lease_ms, limit=limit)
        claimed = []
        for entry_id, raw in zip(flat[::2], flat[1::2], strict=True):
            state = json.loads(raw)
            claimed.append(
                Claimed(entry_id, str(state["sid"]), int(state["n"]), int(state["first"]))
            )
        return claimed

    async def next_due_ms(self) -> int | None:
        """When the earliest head is due (epoch ms), or None when nothing waits."""
        head = await self.client.zrange(self.keys.events_due, 0, 0, withscores=True)
        return int(head[0][1]) if head else None

    async def reschedule(self, entry_id: str, attempts: int, next_ms: int) -> None:
        keys = {"state": self.keys.events_state, "due": self.keys.events_due}
        await self._run("events_retry", keys, entry_id=entry_id, attempts=attempts, next_ms=next_ms)

    async def finish(
        self, entry_id: str, session_id: str, now_ms: int, given_up: dict[str, Any] | None = None
    ) -> None:
        """Delivered (``given_up`` None) or given up (its record): acknowledged and dequeued."""
        keys = {
            "outbox": self.keys.outbox,
            "state": self.keys.events_state,
            "due": self.keys.events_due,
            "queue": self.keys.events_queue(session_id),
            "given_up": self.keys.events_given_up,
            "given_up_at": self.keys.events_given_up_at,
        }
        await self._run(
            "events_finish",
            keys,
            group=self.group,
            entry_id=entry_id,
            now_ms=now_ms,
            keep=GIVEN_UP_KEEP,
            record=None if given_up is None else json.dumps(given_up, separators=(",", ":")),
        )

    async def read_entry(self, entry_id: str) -> dict[str, str] | None:
        """One outbox entry's fields, or None when it is not (or no longer) in the stream."""
        found = await self.client.xrange(self.keys.outbox, min=entry_id, max=entry_id, count=1)
        return {str(k): str(v) for k, v in (found[0][1] or {}).items()} if found else None

    async def given_up_record(self, entry_id: str) -> dict[str, Any] | None:
        raw = await self.client.hget(self.keys.events_given_up, entry_id)
        return json.loads(raw) if raw else None
