"""The per-conversation mailbox: how accepted messages and operator tasks wait for their drain.

Ingest appends to the conversation's inbox (deduplicated on Twilio's MessageSid) and says
whether a drain wake-up is needed; the drain applies entries in order under a fenced lease.
Order and recovery therefore never depend on the order or redelivery of queue messages.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from wa_sessions.statemachine.entries import message_entry, operation_entry
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.calls import QueuedWake, ingest_call
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.redis.resp import RespPipe
from wa_sessions.statemachine.redis.store import RedisSessionStore
from wa_sessions.statemachine.steps import IngestOutcome

#: A drain's lease on a conversation; bounds how long a dead worker's phone waits.
DEFAULT_LEASE_SECONDS = 5.0
#: How long a MessageSid is remembered unless configured: the default retention period (30
#: days), since Twilio's signature has no timestamp and a replay must stay refused while the
#: service holds the message. The ingest script looks a new sid up in each day's bucket: 31
#: lookups instead of 8 for a week, measured 15.5 -> 31 us of Redis time per ingest (20,000
#: ingests, ``INFO commandstats``), against ~340 us of the webhook's own CPU per request.
DEFAULT_DEDUPE_TTL_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class InboxPolicy:
    dedupe_ttl_seconds: int = DEFAULT_DEDUPE_TTL_SECONDS
    max_depth: int = 10_000
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    #: Inbound messages a conversation may send a minute (``INGEST_MESSAGES_PER_MINUTE``,
    #: which the composition root passes); 0, the default of a bare policy: no limit.
    messages_per_minute: int = 0

    @property
    def wake_ttl_ms(self) -> int:
        # A queued wake-up older than a lease is presumed lost and the re-drive pass sends
        # another, unless Dramatiq's queue is backed up: then the pass sets a longer TTL
        # (``wake:ttl``, see ``handlers.wake_ttl_ms``), which the scripts read instead.
        return int(self.lease_seconds * 1000)


class AsyncInbox:
    """The webhook's side of the inbox on an asyncio Redis client.

    Accepts from concurrent requests are pipelined: each call queues its ingest script call, and
    the first one in an event-loop turn schedules one flush that sends everything queued as one
    pipeline. Every call stays its own atomic script, run in call order on one connection, so
    per-phone order is unchanged; redis-py's per-command overhead is paid once per batch.

    With ``wake_message`` (the queue message that wakes a conversation's drain), the ingest
    script enqueues the wake-up itself when one is needed (``ACCEPTED_WOKEN``): one round trip
    per request instead of two."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        keys: Keys,
        policy: InboxPolicy | None = None,
        *,
        wake_message: Callable[[str], QueuedWake] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.policy = policy or InboxPolicy()
        self.wake_message = wake_message
        self._script = client.register_script(scripts.source("ingest", keys))
        timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._pipe = RespPipe(client, timeout=timeout or 5.0)
        self._queued: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        # Flushes in flight, referenced until done (the event loop holds tasks weakly).
        self._sends: set[asyncio.Task[None]] = set()

    async def accept(self, conv: str, message: Message, *, accepted_ms: int) -> IngestOutcome:
        keys, args = ingest_call(
            self.keys,
            conv,
            message_entry(message, accepted_ms),
            message_sid=message.id,
            accepted_ms=accepted_ms,
            dedupe_ttl_ms=self.policy.dedupe_ttl_seconds * 1000,
            max_depth=self.policy.max_depth,
            wake_ttl_ms=self.policy.wake_ttl_ms,
            messages_per_minute=self.policy.messages_per_minute,
            wake=self.wake_message(conv) if self.wake_message is not None else None,
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((keys, args, future))
        return IngestOutcome(int(await future))

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(batch))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._execute(batch)
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(
        self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        """EVALSHA for the whole batch in one round trip. After a Redis restart (NOSCRIPT,
        which means nothing ran) the script is loaded and the batch sent once more; after a
        lost connection the batch is sent once more on a new one (an ingest is idempotent: a
        message that did get in is refused as a duplicate; its wake-up was enqueued by the
        script, or, without ``wake_message``, is sent by the re-drive pass)."""
        sha = self._script.sha
        commands = [("EVALSHA", sha, len(keys), *keys, *args) for keys, args, _ in batch]
        reconnected = reloaded = False
        while True:
            try:
                replies = await self._pipe.execute(commands)
            except RedisConnectionError:
                if reconnected:
                    raise
                reconnected = True
                continue
            if not reloaded and any(isinstance(r, NoScriptError) for r in replies):
                reloaded = True
                await self.client.script_load(self._script.script)
                continue
            return replies

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    def close(self) -> None:
        """Closes the inbox's own connection (the client passed in is the caller's)."""
        self._pipe.close()


class Inbox:
    def __init__(self, store: RedisSessionStore, policy: InboxPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or InboxPolicy()

    def accept(self, conv: str, message: Message, *, accepted_ms: int) -> IngestOutcome:
        """One round trip: dedupe on the message id, hold the conversation to its rate, append,
        and tell whether to wake a drain."""
        return self.store.ingest(
            conv,
            message_entry(message, accepted_ms),
            message_sid=message.id,
            accepted_ms=accepted_ms,
            dedupe_ttl_ms=self.policy.dedupe_ttl_seconds * 1000,
            max_depth=self.policy.max_depth,
            wake_ttl_ms=self.policy.wake_ttl_ms,
            messages_per_minute=self.policy.messages_per_minute,
        )

    def request(
        self, conv: str, trigger: str, session_id: str, *, accepted_ms: int, reason: str
    ) -> tuple[str, bool]:
        """Queues a complete/expire behind the conversation's waiting messages.
        Returns (operation id, whether to wake a drain)."""
        op_id = uuid.uuid4().hex
        wake = self.store.push_operation(
            conv,
            operation_entry(trigger, session_id, op_id, accepted_ms, reason),
            accepted_ms=accepted_ms,
            wake_ttl_ms=self.policy.wake_ttl_ms,
        )
        return op_id, wake
