"""A drain's lease on one conversation, as the effects use it: extended over each slow call, and
the token that fences the commit."""

from __future__ import annotations

from dataclasses import dataclass

from wa_sessions.statemachine.ports import DrainStore
from wa_sessions.statemachine.steps import SessionNow


@dataclass(frozen=True)
class Lease:
    """A drain's hold on one conversation: slow calls extend it, and it fences the commit."""

    store: DrainStore
    conv: str
    token: str
    lease_seconds: float

    async def cover(self, budget_seconds: float) -> bool:
        """Covers a slow call's whole budget; local calls (budget 0) need no round trip.
        False when the lease is no longer ours."""
        if budget_seconds <= 0:
            return True
        return await self.store.extend_lease(
            self.conv, self.token, lease_ms=self._ms(budget_seconds)
        )

    async def cover_and_read(
        self, budget_seconds: float, session_id: str
    ) -> tuple[bool, SessionNow]:
        """``cover`` and the session's status and takeover now, in one round trip (the read
        alone for a local call)."""
        if budget_seconds <= 0:
            return True, await self.store.read_now(self.conv, session_id)
        return await self.store.extend_lease_and_read(
            self.conv, self.token, session_id, lease_ms=self._ms(budget_seconds)
        )

    def _ms(self, budget_seconds: float) -> int:
        return int((budget_seconds + self.lease_seconds) * 1000)
