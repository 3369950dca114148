"""Data protection: the retention of the archive (delete sessions that ended more than N days
ago) and a customer's erasure (every session of one phone, everywhere: Redis, the archive and
the outbox entries not consumed yet). Results are counts; the phone is never logged."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, delete, select

from wa_sessions.archive.models import ArchivedSession

log = logging.getLogger(__name__)


def delete_archived_before(engine: Engine, cutoff: datetime) -> int:
    """Deletes archived sessions (messages and deliveries with them) that ended before
    ``cutoff``; how many."""
    with engine.begin() as conn:
        result = conn.execute(delete(ArchivedSession).where(ArchivedSession.ended_at < cutoff))
    return int(result.rowcount or 0)


def apply_retention(engine: Engine, now: datetime, older_than_days: float) -> int:
    deleted = delete_archived_before(engine, now - timedelta(days=older_than_days))
    log.info(
        "archive retention: %d session(s) ended over %s days ago deleted", deleted, older_than_days
    )
    return deleted


def delete_archived_phone(engine: Engine, phone: str) -> int:
    """Deletes every archived session of ``phone`` (with any business number)."""
    with engine.begin() as conn:
        ids = conn.scalars(
            select(ArchivedSession.session_id).where(ArchivedSession.phone_number == phone)
        ).all()
        if ids:
            conn.execute(delete(ArchivedSession).where(ArchivedSession.session_id.in_(ids)))
    return len(ids)


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed, as counts."""

    redis_sessions: int
    outbox_entries: int
    archived_sessions: int


class ErasableStore(Protocol):
    def erase_conversation(self, conv: str) -> tuple[int, int]: ...

    def erase_daily_calls(self, customer: str) -> int: ...


def erase_phone(
    store: ErasableStore, engine: Engine, phone: str, businesses: Iterable[str]
) -> Erasure:
    """Every session of ``phone`` with each of ``businesses``, everywhere: Redis (sessions,
    indexes, inbox, its counters), the outbox entries not consumed yet, then the archive (last:
    an archive consumer mid-batch may write a session again, the outbox entry it came from is
    gone by then, so a second run leaves nothing)."""
    sessions = entries = 0
    for business in sorted(set(businesses)):
        s, e = store.erase_conversation(f"{phone}|{business}")
        sessions, entries = sessions + s, entries + e
    store.erase_daily_calls(phone)
    archived = delete_archived_phone(engine, phone)
    log.info(
        "erasure: %d Redis session(s), %d outbox entries, %d archived session(s) deleted",
        sessions,
        entries,
        archived,
    )
    return Erasure(sessions, entries, archived)
