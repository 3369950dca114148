"""The drain's side of the Redis store on an asyncio client: a worker process runs hundreds of
drains on one event loop, each waiting for OpenAI or Twilio without holding a thread.

The scripts, their arguments and the parsing of their replies are the sync store's
(``drain_step_call``, ``extend_lease_call``, ``parse_drain_step``); this class only awaits them.
They go over the pipelined RESP connection the webhook uses (``resp.RespPipe``): every drain of
the process shares it, and a call costs the client a fraction of ``redis.asyncio``'s (measured:
18-21 us against 54-92 us per EVALSHA, ``bench/resp_pipe.py``), which matters at five calls per
message. Unlike the webhook's ingest, a drain step is not sent again after a lost connection
(a step that did run would be refused as ``busy`` or ``head``): the drain fails, its lease
lapses and the re-drive pass wakes the phone again.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha1
from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError

from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.calls import (
    drain_step_call,
    extend_lease_call,
    parse_drain_step,
)
from wa_sessions.statemachine.redis.keys import Keys, SessionField
from wa_sessions.statemachine.redis.resp import Command, RespPipe
from wa_sessions.statemachine.steps import DrainPolicy, DrainStep, EffectsCommit, SessionNow

_SCRIPTS = ("drain_step", "extend_lease")


class AsyncDrainStore:
    """``drain_step``, ``extend_lease`` and the status read before a reply, awaited."""

    def __init__(
        self, client: redis.asyncio.Redis, keys: Keys, *, timeout_seconds: float = 5.0
    ) -> None:
        #: Its connection settings open the pipe's connection.
        self.client = client
        self.keys = keys
        self._pipe = RespPipe(client, timeout=timeout_seconds)
        self._sources = {name: scripts.source(name, keys) for name in _SCRIPTS}
        self._shas = {
            name: sha1(source.encode(), usedforsecurity=False).hexdigest()
            for name, source in self._sources.items()
        }

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA of one script; its reply (error replies raised)."""
        [reply] = await self._run_then(name, keys, args)
        return reply

    async def _run_then(
        self, name: str, keys: Sequence[str], args: Sequence[Any], *then: Command
    ) -> list[Any]:
        """EVALSHA, then the commands ``then``, in one round trip; their replies (error
        replies raised). After a Redis restart (NOSCRIPT: nothing ran) the script is loaded
        and the whole batch sent once more."""
        commands: list[Command] = [("EVALSHA", self._shas[name], len(keys), *keys, *args)]
        commands += then
        replies = await self._pipe.execute(commands)
        if isinstance(replies[0], NoScriptError):
            await self._pipe.execute([("SCRIPT", "LOAD", self._sources[name])])
            replies = await self._pipe.execute(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

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
        return parse_drain_step(await self._run("drain_step", keys, args))

    async def extend_lease(self, conv: str, token: str, *, lease_ms: int) -> bool:
        """Lengthens the lease (before a slow call); False when it is no longer ours."""
        keys, args = extend_lease_call(self.keys, conv, token, lease_ms=lease_ms)
        return bool(int(await self._run("extend_lease", keys, args)))

    async def extend_lease_and_read(
        self, conv: str, token: str, session_id: str, *, lease_ms: int
    ) -> tuple[bool, SessionNow]:
        """Right before a reply: lengthens the lease over the send and reads the session's
        status and takeover, in one round trip. (False, ...) when the lease is no longer ours."""
        keys, args = extend_lease_call(self.keys, conv, token, lease_ms=lease_ms)
        extended, fields, opted_out = await self._run_then(
            "extend_lease", keys, args, *self._read_commands(conv, session_id)
        )
        return bool(int(extended)), _now(fields, opted_out)

    async def read_now(self, conv: str, session_id: str) -> SessionNow:
        """The session's status, takeover and opt-out now (read right before a reply leaves)."""
        replies = await self._pipe.execute(self._read_commands(conv, session_id))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        fields, opted_out = replies
        return _now(fields, opted_out)

    def _read_commands(self, conv: str, session_id: str) -> list[Command]:
        return [
            (
                "HMGET",
                self.keys.session(conv, session_id),
                SessionField.STATUS.value,
                SessionField.TAKEN_OVER_BY.value,
            ),
            ("EXISTS", self.keys.conv_opt_out(conv)),
        ]

    async def close(self) -> None:
        self._pipe.close()
        await self.client.aclose()


def _now(fields: Any, opted_out: Any) -> SessionNow:
    status, holder = fields
    return SessionNow(_text(status), _text(holder), bool(int(opted_out)))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
