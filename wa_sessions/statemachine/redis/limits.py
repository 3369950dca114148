"""Limits on a paid API shared by every worker process, in Redis: the deployment-wide part of
a rate gate (``ratelimit.RateGate``: a requests-per-minute token bucket and the pause an API
asked for with a 429, ``lua/take_token.lua``), and each customer's daily allowance of calls
(``orders.daily_cap``, ``lua/take_daily_call.lua``)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any

import redis.asyncio

from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys


class RedisSharedLimit:
    """One API's bucket and pause flag (``requests_per_minute`` 0: the pause only)."""

    def __init__(
        self, client: redis.asyncio.Redis, keys: Keys, api: str, requests_per_minute: int = 0
    ) -> None:
        self.client = client
        self.requests_per_minute = requests_per_minute
        self._keys = {"bucket": keys.rate_bucket(api), "pause": keys.rate_pause(api)}
        self._take: Any = client.register_script(scripts.source("take_token", keys))

    async def take(self) -> float:
        """Takes one request token: 0.0 when taken, else seconds to wait before asking again."""
        if self.requests_per_minute <= 0:
            ttl = int(await self.client.pttl(self._keys["pause"]))
            return max(0, ttl) / 1000
        rate = self.requests_per_minute / 60_000
        # Burst: a second's worth of requests (at least one).
        capacity = max(1.0, self.requests_per_minute / 60)
        keys, args = scripts.call(
            "take_token",
            self._keys,
            now_ms=int(time.time() * 1000),
            rate=repr(rate),
            capacity=repr(capacity),
        )
        return int(await self._take(keys=keys, args=args)) / 1000

    async def pause(self, seconds: float) -> None:
        await self.client.set(self._keys["pause"], "1", px=max(1, int(seconds * 1000)))


#: How long a day's counters outlive the day: workers' clocks differ by a little, and a counter
#: gone before a late worker's last call would give that customer a fresh allowance.
_DAY_MARGIN = timedelta(hours=1)


class RedisDailyCallCap:
    """``orders.daily_cap.DailyCallAllowance`` in Redis: one counter per customer and UTC day,
    checked and counted in one script."""

    def __init__(
        self, client: redis.asyncio.Redis, keys: Keys, api: str, calls_per_day: int
    ) -> None:
        self.client = client
        self.keys = keys
        self.api = api
        self.calls_per_day = calls_per_day
        self._take: Any = client.register_script(scripts.source("take_daily_call", keys))

    async def take(self, customer: str, day: date) -> bool:
        end = datetime.combine(day + timedelta(days=1), day_time(), tzinfo=UTC) + _DAY_MARGIN
        keys, args = scripts.call(
            "take_daily_call",
            {"counter": self.keys.daily_calls(self.api, day.strftime("%Y%m%d"), customer)},
            cap=self.calls_per_day,
            expire_at_ms=int(end.timestamp() * 1000),
        )
        return int(await self._take(keys=keys, args=args)) == 1
