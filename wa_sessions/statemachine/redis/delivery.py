"""Delivery statuses of outbound replies, from Twilio's status callbacks, on the web process'
asyncio Redis client.

Callbacks repeat and arrive out of order, sometimes before the reply they describe has been
committed. One Lua script per callback dedupes on MessageSid plus status, moves the status only
forward (``models.DELIVERY_RANK``) and writes it into the stored message's metadata, which the
session API then returns as is: the write happens once per callback instead of a lookup per
outbound message on every session read.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import redis.asyncio

from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.statemachine.steps import to_ms

#: How long a callback for a reply not (yet) committed is kept for the commit to pick up.
UNMAPPED_TTL_SECONDS = 86_400


class DeliveryOutcome(StrEnum):
    APPLIED = "applied"
    #: Older than (or as far as) the status already stored: a late ``sent`` after ``read``.
    STALE = "stale"
    #: The same MessageSid and status seen before (Twilio repeats callbacks).
    DUPLICATE = "duplicate"
    #: No committed reply has this MessageSid (yet): kept for a day, then forgotten.
    UNKNOWN = "unknown"


class AsyncDeliveryStatuses:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        keys: Keys,
        *,
        unmapped_ttl_seconds: int = UNMAPPED_TTL_SECONDS,
    ) -> None:
        self.unmapped_ttl_ms = unmapped_ttl_seconds * 1000
        self._script = client.register_script(scripts.source("delivery_status", keys))

    async def record(
        self, message_sid: str, status: str, error_code: str, *, at: datetime
    ) -> DeliveryOutcome:
        keys, args = scripts.call(
            "delivery_status",
            {},
            message_sid=message_sid,
            status=status,
            error_code=error_code,
            at=at.isoformat(),
            at_ms=to_ms(at),
            unmapped_ttl_ms=self.unmapped_ttl_ms,
        )
        result = await self._script(keys=keys, args=args)
        first = result[0]
        return DeliveryOutcome(first.decode() if isinstance(first, bytes) else str(first))
