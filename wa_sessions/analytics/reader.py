"""Reads the analytics rollups from Redis for a report: one pipeline of HGETALLs over the hour
hashes of the numbers asked for (plus each day's top-items zset), whatever the number of
sessions behind them. A quarter of one number is 2,208 hashes in one round trip."""

from __future__ import annotations

from datetime import date, timedelta

import redis

from wa_sessions.analytics.report import (
    AnalyticsReport,
    Rollups,
    build_report,
    epoch_day,
    epoch_hour,
    hours_of,
)
from wa_sessions.statemachine.redis.keys import Keys


class AnalyticsReader:
    """Builds ``AnalyticsReport``s from the rollups on ``client`` (decoding to ``str``)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def business_numbers(self) -> list[str]:
        """Every business number that has rollups (within the retention period or older)."""
        return sorted(str(n) for n in self.client.smembers(self.keys.rollup_businesses))

    def report(self, first: date, last: date, business_number: str | None) -> AnalyticsReport:
        """The report of the UTC days ``first``..``last`` for one number, or for all."""
        numbers = [business_number] if business_number else self.business_numbers()
        starts = hours_of(first, last)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        pipe = self.client.pipeline(transaction=False)
        for number in numbers:
            for start in starts:
                pipe.hgetall(self.keys.rollup(number, epoch_hour(start)))
            for day in days:
                pipe.zrange(self.keys.rollup_items(number, epoch_day(day)), 0, -1, withscores=True)
        replies = iter(pipe.execute())
        rollups = Rollups()
        for _ in numbers:
            for start in starts:
                rollups.add_hour(start, next(replies))
            for _ in days:
                rollups.add_items((str(name), float(score)) for name, score in next(replies))
        return build_report(
            rollups,
            first=first,
            last=last,
            business_number=business_number,
            business_numbers=numbers,
        )
