"""The ``archive`` consumer of the outbox: for each session end (and each failure reported
after an end) it reads the session, with its messages, from Redis, where an ended session
stays until the archive has acknowledged it (``lua/purge.lua``), and upserts it. One
transaction per batch; the runner acknowledges the batch only after the commit, so a crash or
a database outage leaves it pending and it is written again, in full, later: upserts by session
id and by (session id, message id) make that a no-op rather than a duplicate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

from wa_sessions.archive.models import ArchivedDelivery, ArchivedMessage, ArchivedSession
from wa_sessions.archive.rows import delivery_rows, message_rows, session_row
from wa_sessions.outbox.entry import OutboxEntry
from wa_sessions.statemachine.models import Session, SessionStatus
from wa_sessions.statemachine.redis.keys import OUTBOX_ARCHIVE_GROUP

log = logging.getLogger(__name__)

#: Events that (re)write a session: its end, and a reply's failure reported after it ended.
ARCHIVED_EVENTS = frozenset({"session.completed", "session.expired", "message.failed"})


class SessionLoader(Protocol):
    """The Redis store's read of one session with its messages."""

    def load(
        self,
        session_id: str,
        *,
        conv: str | None = None,
        include_messages: bool = True,
        message_limit: int | None = None,
    ) -> Session | None: ...


def upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, in the dialect's own words."""
    if not rows:
        return
    dialect = conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    columns = [c.name for c in table.columns if c.name not in keys]
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in columns}
        ),
        [_columns(table, row) for row in rows],
    )


def _columns(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """Attribute names to column names (``meta`` is stored as ``metadata``)."""
    return {("metadata" if k == "meta" else k): v for k, v in row.items()}


class ArchiveWriter:
    """Writes ended sessions into the archive, idempotently."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.clock = clock or (lambda: datetime.now(UTC))

    def write(self, sessions: list[tuple[Session, str]]) -> None:
        """Upserts each (session, outbox id) with its messages and deliveries, in one
        transaction."""
        now = self.clock()
        sess_t = ArchivedSession.__table__
        with self.engine.begin() as conn:
            upsert(conn, sess_t, [session_row(s, ob, now) for s, ob in sessions], ["session_id"])  # type: ignore[arg-type]
            for session, _ in sessions:
                upsert(
                    conn,
                    ArchivedMessage.__table__,  # type: ignore[arg-type]
                    message_rows(session),
                    ["session_id", "message_id"],
                )
                upsert(
                    conn,
                    ArchivedDelivery.__table__,  # type: ignore[arg-type]
                    delivery_rows(session),
                    ["session_id", "message_id"],
                )


class ArchiveConsumer:
    """The outbox's ``archive`` group: reads each ended session from Redis, writes the batch."""

    name = OUTBOX_ARCHIVE_GROUP

    def __init__(self, store: SessionLoader, writer: ArchiveWriter) -> None:
        self.store = store
        self.writer = writer

    async def handle(self, entries: list[OutboxEntry]) -> list[str]:
        return await asyncio.to_thread(self.write_batch, entries)

    def write_batch(self, entries: list[OutboxEntry]) -> list[str]:
        """Every entry is finished once the transaction commits (events the archive does not
        keep included); an exception leaves the whole batch pending."""
        latest: dict[str, tuple[Session, str]] = {}
        for entry in entries:
            if entry.type not in ARCHIVED_EVENTS:
                continue
            session = self.store.load(entry.session_id, conv=entry.conv)
            if session is None:
                session = _from_view(entry)
            if session is None or session.status is SessionStatus.ACTIVE:
                continue
            latest[session.session_id] = (session, entry.id)
        if latest:
            self.writer.write(list(latest.values()))
        return [e.id for e in entries]


def _from_view(entry: OutboxEntry) -> Session | None:
    """The session as its end event shows it (no messages), when Redis no longer has it."""
    if entry.type == "message.failed":
        return None
    try:
        return Session.model_validate(entry.data)
    except ValueError:
        log.warning("archive: the end event %s has no readable session", entry.id)
        return None
