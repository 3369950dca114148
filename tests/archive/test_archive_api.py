"""The session API after Redis lost its sessions: answered from the archive, marked archived."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import redis

from tests.integration.test_webhook import ADMIN, BUSINESS, MakeWeb, make_web
from wa_sessions.archive import db
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.archive.writer import ArchiveConsumer, ArchiveWriter
from wa_sessions.outbox.entry import OutboxEntry
from wa_sessions.statemachine import SessionCreate
from wa_sessions.statemachine.redis.keys import Keys

__all__ = ["make_web"]

PHONE = "+14155550123"


def test_reads_after_flushall_are_served_from_the_archive_marked_archived(
    make_web: MakeWeb, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Phone, summary and completed listing answer from SQL; an unknown phone is still 404."""
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    db.upgrade(url)
    engine = db.build_engine(url)
    web = make_web(archive=ArchiveReader(engine))
    service = web.service
    ids = []
    for _ in range(2):
        s = service.create_session(SessionCreate(phone_number=PHONE, initial_message="hello"))
        service.complete_session(s.session_id)
        ids.append(s.session_id)
    entries = [OutboxEntry.parse(i, f) for i, f in redis_client.xrange(Keys().outbox)]
    asyncio.run(ArchiveConsumer(service.store, ArchiveWriter(engine)).handle(entries))
    redis_client.flushall()

    got = web.client.get(f"/session/{PHONE}", headers=ADMIN)
    assert got.status_code == 200
    body = got.json()
    assert body["session"]["archived"] is True
    assert body["session"]["session_id"] == ids[-1]
    assert body["session"]["business_number"] == BUSINESS
    assert [m["content"] for m in body["conversation_history"]] == ["hello"]

    summary = web.client.get(f"/session/{ids[0]}/summary", headers=ADMIN).json()
    assert summary["archived"] is True
    assert summary["message_count"] == 1

    listing = web.client.get("/sessions", params={"status": "completed"}, headers=ADMIN).json()
    assert listing["total"] == 2
    assert {s["session_id"] for s in listing["sessions"]} == set(ids)
    assert all(s["archived"] for s in listing["sessions"])

    second = web.client.get(
        "/sessions", params={"status": "completed", "offset": 1, "limit": 1}, headers=ADMIN
    ).json()
    assert [s["session_id"] for s in second["sessions"]] == [listing["sessions"][1]["session_id"]]
    assert web.client.get("/session/+14155550999", headers=ADMIN).status_code == 404
    engine.dispose()


def test_redis_sessions_come_first_and_archived_ones_continue_the_listing(
    make_web: MakeWeb, redis_client: redis.Redis, tmp_path: Path, clock: Any
) -> None:
    """A session still in Redis is listed once, unmarked; older archived ones follow."""
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    db.upgrade(url)
    engine = db.build_engine(url)
    web = make_web(archive=ArchiveReader(engine))
    service = web.service
    old = service.create_session(SessionCreate(phone_number="+14155550001"))
    service.complete_session(old.session_id)
    entries = [OutboxEntry.parse(i, f) for i, f in redis_client.xrange(Keys().outbox)]
    asyncio.run(ArchiveConsumer(service.store, ArchiveWriter(engine)).handle(entries))
    redis_client.flushall()
    clock.advance(minutes=5)
    new = service.create_session(SessionCreate(phone_number="+14155550002"))
    service.complete_session(new.session_id)
    listing = web.client.get("/sessions", params={"status": "completed"}, headers=ADMIN).json()
    assert [(s["session_id"], s["archived"]) for s in listing["sessions"]] == [
        (new.session_id, False),
        (old.session_id, True),
    ]
    assert listing["total"] == 2
    engine.dispose()
