"""The per-conversation mailbox: how accepted messages and operator tasks wait for their drain.

Ingest appends to the conversation's inbox (deduplicated on Twilio's MessageSid) and says
whether a drain wake-up is needed; the drain applies entries in order under a fenced lease.
Order and recovery therefore never depend on the order or redelivery of queue messages.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis.asyncio

from wa_sessions.statemachine import scripts
from wa_sessions.statemachine.keys import Keys
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.store import (
    IngestOutcome,
    RedisSessionStore,
    ingest_call,
    message_entry,
    operation_entry,
)


@dataclass(frozen=True, slots=True)
class InboxPolicy:
    dedupe_ttl_seconds: int = 7 * 24 * 3600
    max_depth: int = 10_000
    lease_seconds: float = 5.0

    @property
    def wake_ttl_ms(self) -> int:
        # A queued wake-up older than a lease is presumed lost; the re-drive pass sends another.
        return int(self.lease_seconds * 1000)


class AsyncInbox:
    """The webhook's side of the inbox on an asyncio Redis client, so accepting a message costs
    the event loop one awaited round trip and no thread hop."""

    def __init__(
        self, client: redis.asyncio.Redis, keys: Keys, policy: InboxPolicy | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.policy = policy or InboxPolicy()
        self._ingest = client.register_script(scripts.build(keys)["ingest"])

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
        )
        return IngestOutcome(int(await self._ingest(keys=keys, args=args)))

    async def ping(self) -> bool:
        return bool(await self.client.ping())


class Inbox:
    def __init__(self, store: RedisSessionStore, policy: InboxPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or InboxPolicy()

    def accept(self, conv: str, message: Message, *, accepted_ms: int) -> IngestOutcome:
        """One round trip: dedupe on the message id, append, and tell whether to wake a drain."""
        return self.store.ingest(
            conv,
            message_entry(message, accepted_ms),
            message_sid=message.id,
            accepted_ms=accepted_ms,
            dedupe_ttl_ms=self.policy.dedupe_ttl_seconds * 1000,
            max_depth=self.policy.max_depth,
            wake_ttl_ms=self.policy.wake_ttl_ms,
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
