"""The store roles the workers depend on, as protocols: the Redis adapter and the in-memory
store (``memory.InMemoryStore``) both satisfy them structurally, so handler and effect tests run
the production drain without a Redis (cosmicpython's repository port)."""

from __future__ import annotations

from typing import Protocol

from wa_sessions.statemachine.steps import (
    DrainPolicy,
    DrainStep,
    EffectsCommit,
    IngestOutcome,
    SessionNow,
)


class DrainStore(Protocol):
    """What a drain needs of the store, awaited on the worker's drain loop: one fenced step at
    a time, lease extensions before slow calls, and the status and takeover read right before
    a reply."""

    async def drain_step(
        self,
        conv: str,
        token: str,
        policy: DrainPolicy,
        *,
        acquire: bool,
        now_ms: int,
        id_base: str,
        commit: EffectsCommit | None = None,
    ) -> DrainStep:
        """Takes (``acquire``) or checks the lease, commits ``commit``, then hands out the
        pending records or applies the next batch of the inbox, or releases the lease."""
        ...

    async def extend_lease(self, conv: str, token: str, *, lease_ms: int) -> bool:
        """Lengthens the lease; False when it is no longer ``token``'s."""
        ...

    async def read_now(self, conv: str, session_id: str) -> SessionNow:
        """The session's stored status and takeover now."""
        ...

    async def extend_lease_and_read(
        self, conv: str, token: str, session_id: str, *, lease_ms: int
    ) -> tuple[bool, SessionNow]:
        """``extend_lease`` and ``read_now`` at once (one round trip to Redis)."""
        ...

    async def close(self) -> None: ...


class IngestStore(Protocol):
    """The webhook's and the operators' side of the inbox (synchronous, like
    ``RedisSessionStore``): append an entry and say whether a drain must be woken."""

    def ingest(
        self,
        conv: str,
        entry: str,
        *,
        message_sid: str,
        accepted_ms: int,
        dedupe_ttl_ms: int,
        max_depth: int,
        wake_ttl_ms: int,
        messages_per_minute: int = 0,
    ) -> IngestOutcome:
        """Dedupes on ``message_sid``, refuses over ``messages_per_minute`` (0: no limit) and
        past ``max_depth``, appends, sets the wake flag."""
        ...

    def push_operation(self, conv: str, entry: str, *, accepted_ms: int, wake_ttl_ms: int) -> bool:
        """Appends an operator entry (no dedupe); True when a drain wake-up must be enqueued."""
        ...
