"""The archive consumer on the suite's Redis and on each database: ended sessions written with
their messages once however often a batch is written, reads served from the archive after
Redis lost the session, retention, and a customer's erasure everywhere."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession

from wa_sessions.archive import db
from wa_sessions.archive.maintenance import apply_retention, erase_phone
from wa_sessions.archive.models import ArchivedMessage, ArchivedSession
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.archive.writer import ArchiveConsumer, ArchiveWriter
from wa_sessions.outbox.entry import OutboxEntry
from wa_sessions.statemachine import (
    MessageDirection,
    SessionCreate,
    SessionService,
    SessionStatus,
    SessionUpdate,
)
from wa_sessions.statemachine.redis.keys import Keys

PHONE = "+14155550123"
OTHER = "+14155550999"
BUSINESS = "+14155238886"
KEYS = Keys()


@pytest.fixture
def service(redis_client: redis.Redis, clock: Any) -> SessionService:
    return SessionService(redis_client, clock=clock, business_number=BUSINESS)


@pytest.fixture
def engine(database_url: str) -> Any:
    engine = db.build_engine(database_url)
    yield engine
    engine.dispose()


def outbox(client: redis.Redis) -> list[OutboxEntry]:
    return [OutboxEntry.parse(i, f) for i, f in client.xrange(KEYS.outbox)]


def ended_session(service: SessionService, phone: str = PHONE) -> str:
    s = service.create_session(
        SessionCreate(phone_number=phone, context={"lang": "en"}, initial_message="2 pizzas")
    )
    service.add_message(phone, "On it", direction=MessageDirection.OUTBOUND)
    service.update_session(s.session_id, SessionUpdate(order_details={"items": [{"n": 2}]}))
    service.complete_session(s.session_id)
    return s.session_id


def counts(engine: Any) -> tuple[int, int]:
    with OrmSession(engine) as orm:
        return (
            orm.scalar(select(func.count()).select_from(ArchivedSession)) or 0,
            orm.scalar(select(func.count()).select_from(ArchivedMessage)) or 0,
        )


def test_an_ended_session_is_archived_with_its_messages_once_however_often_it_is_written(
    service: SessionService, redis_client: redis.Redis, engine: Any
) -> None:
    """The same batch written three times (a crash before the ack) leaves one row each."""
    sid = ended_session(service)
    consumer = ArchiveConsumer(service.store, ArchiveWriter(engine))
    entries = outbox(redis_client)
    for _ in range(3):
        assert asyncio.run(consumer.handle(entries)) == [e.id for e in entries]
    assert counts(engine) == (1, 2)
    archived = ArchiveReader(engine).session(sid)
    assert archived is not None
    assert archived.status is SessionStatus.COMPLETED
    assert archived.order_details == {"items": [{"n": 2}]}
    assert archived.context == {"lang": "en"}
    assert [m.content for m in archived.messages] == ["2 pizzas", "On it"]
    assert archived.counts["n:inbound"] == 1


def test_reads_after_a_flush_come_from_the_archive(
    service: SessionService, redis_client: redis.Redis, engine: Any, clock: Any
) -> None:
    """By phone, by id (summary) and in the listing of completed sessions."""
    sid = ended_session(service)
    asyncio.run(ArchiveConsumer(service.store, ArchiveWriter(engine)).handle(outbox(redis_client)))
    redis_client.flushall()
    assert service.get_latest_session_by_phone(PHONE) is None
    reader = ArchiveReader(engine)
    latest = reader.latest_by_phone(PHONE, BUSINESS, message_limit=1)
    assert latest is not None
    assert latest.session_id == sid
    assert [m.content for m in latest.messages] == ["On it"]
    summary = reader.summary(sid, clock())
    assert summary is not None
    assert summary.archived
    assert summary.messages_by_direction == {"inbound": 1, "outbound": 1}
    page, total = reader.page("completed", offset=0, limit=10, ended_before=None)
    assert total == 1
    assert page[0].session_id == sid
    assert reader.page("expired", offset=0, limit=10, ended_before=None)[1] == 0


def test_the_retention_deletes_archived_sessions_ended_before_the_cutoff(
    service: SessionService, redis_client: redis.Redis, engine: Any, clock: Any
) -> None:
    """A session ended 40 days ago goes with its messages; today's stays."""
    old = ended_session(service)
    clock.advance(days=40)
    new = ended_session(service, OTHER)
    asyncio.run(ArchiveConsumer(service.store, ArchiveWriter(engine)).handle(outbox(redis_client)))
    assert apply_retention(engine, clock(), 30) == 1
    reader = ArchiveReader(engine)
    assert reader.session(old) is None
    assert reader.session(new) is not None
    assert counts(engine) == (1, 2)


def test_an_erasure_deletes_the_phone_everywhere_and_leaves_others(
    service: SessionService, redis_client: redis.Redis, engine: Any
) -> None:
    """Redis sessions and indexes, outbox entries not consumed yet, archived rows."""
    archived = ended_session(service)
    asyncio.run(ArchiveConsumer(service.store, ArchiveWriter(engine)).handle(outbox(redis_client)))
    redis_client.delete(KEYS.outbox)
    live = service.create_session(SessionCreate(phone_number=PHONE, initial_message="again"))
    other = ended_session(service, OTHER)
    service.set_language_override(PHONE, BUSINESS, "es")
    live_key = KEYS.session(f"{PHONE}|{BUSINESS}", live.session_id)
    assert redis_client.exists(live_key)
    redis_client.zadd(KEYS.nudge, {live.session_id: 1})
    erased = erase_phone(service.store, engine, PHONE, [BUSINESS])
    assert (erased.redis_sessions, erased.archived_sessions) == (2, 1)
    assert erased.outbox_entries == 1
    assert service.get_latest_session_by_phone(PHONE) is None
    assert service.get_session_by_id(live.session_id) is None
    assert ArchiveReader(engine).session(archived) is None
    assert {e.session_id for e in outbox(redis_client)} == {other}
    assert not [k for k in redis_client.keys("*") if PHONE in k]
    assert redis_client.zscore(KEYS.nudge, live.session_id) is None
    assert service.get_session_by_id(other) is not None


def test_a_session_redis_no_longer_has_is_archived_from_its_end_event(
    service: SessionService, redis_client: redis.Redis, engine: Any
) -> None:
    """The end event's view is enough for the session row (its messages are gone)."""
    sid = ended_session(service)
    entries = outbox(redis_client)
    service.store.erase_conversation(f"{PHONE}|{BUSINESS}")
    asyncio.run(ArchiveConsumer(service.store, ArchiveWriter(engine)).handle(entries))
    archived = ArchiveReader(engine).session(sid)
    assert archived is not None
    assert archived.status is SessionStatus.COMPLETED
    assert archived.messages == []


def test_the_purge_keeps_an_ended_session_until_the_archive_acknowledged_it(
    service: SessionService, redis_client: redis.Redis, clock: Any
) -> None:
    """With an archive group on the outbox, retention in Redis waits for the archive."""
    sid = ended_session(service)
    redis_client.xgroup_create(KEYS.outbox, "archive", id="0")
    clock.advance(days=45)
    service.purge_retained()
    assert service.get_session_by_id(sid) is not None
    redis_client.xreadgroup("archive", "c", {KEYS.outbox: ">"}, count=100)
    ids = [i for i, _f in redis_client.xrange(KEYS.outbox)]
    redis_client.xack(KEYS.outbox, "archive", *ids)
    service.purge_retained()
    assert service.get_session_by_id(sid) is None


def test_an_archived_time_reads_back_in_utc(
    service: SessionService, redis_client: redis.Redis, engine: Any
) -> None:
    """SQLite gives naive datetimes back: they are UTC, as written."""
    sid = ended_session(service)
    asyncio.run(ArchiveConsumer(service.store, ArchiveWriter(engine)).handle(outbox(redis_client)))
    archived = ArchiveReader(engine).session(sid)
    live = service.get_session_by_id(sid)
    assert archived is not None
    assert live is not None
    assert archived.ended_at == live.ended_at
    assert archived.ended_at is not None
    assert archived.ended_at.utcoffset() == timedelta(0)
    assert archived.created_at.tzinfo is not None
    assert datetime.now(UTC) > archived.created_at - timedelta(days=3650)
