"""The fixed histogram buckets of the analytics rollups, shared by the Lua scripts (the prelude
writes them in, see ``statemachine/redis/scripts.py``) and the report that reads them back.

A value lands in the first bucket whose upper bound it does not exceed; the last bucket (index
``len(bounds)``) holds everything above the last bound. Changing a bound changes what stored
bucket indexes mean: only append bounds, or accept that older hours read differently.
"""

from __future__ import annotations

from collections.abc import Sequence

#: How long a session lasted, from its creation to its end (seconds).
DURATION_BOUNDS_SECONDS: tuple[float, ...] = (
    60,
    300,
    900,
    1800,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    24 * 3600,
    48 * 3600,
)
#: How many messages a session held when it ended (both directions, system notes included).
MESSAGES_BOUNDS: tuple[float, ...] = (1, 2, 3, 5, 10, 20, 50, 100, 500)
#: From an inbound message's acceptance to the send of the reply that answers it (seconds).
REPLY_BOUNDS_SECONDS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30, 60, 300, 900)

#: Most ordered items kept per business number and day (the least ordered is dropped beyond).
TOP_ITEMS_CAP = 200


def bucket_of(bounds: Sequence[float], value: float) -> int:
    """The index of the bucket ``value`` lands in (what the Lua ``rollup_bucket`` computes)."""
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile estimated from bucket counts, interpolating linearly inside the bucket
    it falls in (from 0 for the first). A quantile in the overflow bucket is reported as the last
    bound: a floor, the histogram cannot say more. None when there is nothing counted."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return float(bounds[-1])
            lower = float(bounds[index - 1]) if index else 0.0
            upper = float(bounds[index])
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return float(bounds[-1])


def lua_buckets() -> str:
    """The bounds as Lua tables for the scripts' prelude, in the unit the scripts count in
    (milliseconds, messages), and the top-items cap."""

    def table(bounds: Sequence[float], scale: int) -> str:
        return "{" + ", ".join(str(round(bound * scale)) for bound in bounds) + "}"

    return (
        "-- Analytics bucket upper bounds (analytics/buckets.py).\n"
        f"local RB_DURATION = {table(DURATION_BOUNDS_SECONDS, 1000)}\n"
        f"local RB_MESSAGES = {table(MESSAGES_BOUNDS, 1)}\n"
        f"local RB_REPLY = {table(REPLY_BOUNDS_SECONDS, 1000)}\n"
        f"local ROLLUP_ITEMS_CAP = {TOP_ITEMS_CAP}\n"
    )
