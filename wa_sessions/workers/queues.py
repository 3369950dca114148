"""Dramatiq's Redis layout for this service's queue, spelled once.

The webhook's ingest script enqueues wake-ups in it, the re-drive pass reads its head's age and
``/metrics`` reads its depths; all of them name the keys through ``QueueKeys``. The layout is
Dramatiq 2.x's (``dramatiq/brokers/redis.py``, pinned in constraints.txt):
``tests/integration/test_actors.py`` proves a real worker consumes what is written here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Dramatiq queue of every actor here: wake-ups are tiny and uniform, one queue suffices.
QUEUE = "wa_sessions"
#: Dramatiq's own keys live under this prefix, beside (not inside) the session keys.
NAMESPACE = "wa-dramatiq"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The Redis keys of one Dramatiq queue: message ids ready to run (list), their encoded
    messages (hash), retries waiting for their backoff (list, Dramatiq's delay queue ``.DQ``)
    and dead-lettered messages (sorted set ``.XQ``, kept a week by Dramatiq)."""

    namespace: str = NAMESPACE
    queue: str = QUEUE

    @property
    def ready(self) -> str:
        return f"{self.namespace}:{self.queue}"

    @property
    def messages(self) -> str:
        return f"{self.ready}.msgs"

    @property
    def delayed(self) -> str:
        return f"{self.ready}.DQ"

    @property
    def dead(self) -> str:
        return f"{self.ready}.XQ"
