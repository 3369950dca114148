"""The drain's side of the Redis store on an asyncio client: a worker process runs hundreds of
drains on one event loop, each waiting for OpenAI or Twilio without holding a thread.

The scripts, their arguments and the parsing of their replies are the sync store's
(``drain_step_call``, ``extend_lease_call``, ``parse_drain_step``); this class only awaits them.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys, SessionField
from wa_sessions.statemachine.redis.store import (
    DrainPolicy,
    DrainStep,
    EffectsCommit,
    drain_step_call,
    extend_lease_call,
    parse_drain_step,
)

_SCRIPTS = ("drain_step", "extend_lease")


class AsyncDrainStore:
    """``drain_step``, ``extend_lease`` and the status read before a reply, awaited."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._scripts: dict[str, Any] = {
            name: client.register_script(scripts.source(name, keys)) for name in _SCRIPTS
        }

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
        """One round trip of a drain; see ``RedisSessionStore.drain_step``."""
        keys, args = drain_step_call(
            self.keys,
            conv,
            token,
            policy,
            acquire=acquire,
            now_ms=now_ms,
            id_base=id_base,
            commit=commit,
        )
        return parse_drain_step(await self._scripts["drain_step"](keys=keys, args=args))

    async def extend_lease(self, conv: str, token: str, *, lease_ms: int) -> bool:
        """Lengthens the lease (before a slow call); False when it is no longer ours."""
        keys, args = extend_lease_call(self.keys, conv, token, lease_ms=lease_ms)
        return bool(int(await self._scripts["extend_lease"](keys=keys, args=args)))

    async def status_of(self, conv: str, session_id: str) -> str | None:
        """The session's status now (read right before a reply leaves)."""
        value = await self.client.hget(self.keys.session(conv, session_id), SessionField.STATUS)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def close(self) -> None:
        await self.client.aclose()
