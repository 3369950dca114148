"""What every part of the sync Redis store shares: a decoding client, the key layout, and the
Lua scripts registered on that client, run by name with named arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys


class ScriptedStore:
    """A Redis client decoding to ``str``, its keys, and its registered scripts."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.client = _decoding(client)
        self.keys = keys or Keys()
        self._scripts = {
            name: self.client.register_script(source)
            for name, source in scripts.build(self.keys).items()
        }

    def _run(self, name: str, keys: Mapping[str, str | None] | None = None, **args: Any) -> Any:
        keys_, argv = scripts.call(name, keys or {}, **args)
        return self._scripts[name](keys=keys_, args=argv)


def _decoding(client: redis.Redis) -> redis.Redis:
    """The store works in ``str``; reuse a bytes client's connection settings with decoding on."""
    kwargs = client.get_connection_kwargs()
    if kwargs.get("decode_responses"):
        return client
    pool = client.connection_pool
    new_pool = pool.__class__(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        **{**kwargs, "decode_responses": True},
    )
    return redis.Redis(connection_pool=new_pool)
