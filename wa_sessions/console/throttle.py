"""A per-client limit on failed console sign-ins, besides the fixed delay each failure waits:
the delay slows one guesser, the limit stops many parallel guesses from one address.

A fixed one-minute window per client address in Redis (``Keys.console_sign_in_failures``),
shared by every web process: a failure increments it (the first one starts its minute), and
while it is at the limit the sign-in form answers 429 without looking at the token.
"""

from __future__ import annotations

from typing import cast

import redis

from wa_sessions.statemachine.redis.keys import Keys

WINDOW_SECONDS = 60


class SignInThrottle:
    """``limit`` failed sign-ins per client address and minute (0: no limit)."""

    def __init__(self, client: redis.Redis, keys: Keys, limit: int) -> None:
        self.client = client
        self.keys = keys
        self.limit = limit

    def blocked(self, address: str) -> bool:
        if not self.limit:
            return False
        count = cast(str | None, self.client.get(self.keys.console_sign_in_failures(address)))
        return int(count or 0) >= self.limit

    def failed(self, address: str) -> None:
        if not self.limit:
            return
        key = self.keys.console_sign_in_failures(address)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS, nx=True)
        pipe.execute()
