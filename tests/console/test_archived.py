"""The conversation page of a session Redis no longer holds (a flush, retention): shown from
the SQL archive, read-only and marked archived; an unreachable archive is a readable 503."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis
from sqlalchemy import create_engine

from tests.console.conftest import MakeConsole
from wa_sessions.archive import db
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.archive.writer import ArchiveConsumer, ArchiveWriter
from wa_sessions.outbox.entry import OutboxEntry
from wa_sessions.statemachine import SessionCreate
from wa_sessions.statemachine.redis.keys import Keys

PHONE = "+14155550123"


def test_a_session_gone_from_redis_is_shown_read_only_from_the_archive(
    make_console: MakeConsole, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """After FLUSHALL the page still shows the messages and order, marked archived, without
    the live updates, the actions or the analysis button."""
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    db.upgrade(url)
    engine = db.build_engine(url)
    console = make_console(archive=ArchiveReader(engine))
    service = console.service
    created = service.create_session(
        SessionCreate(phone_number=PHONE, initial_message="Two boxes of tea, please")
    )
    service.complete_session(created.session_id)
    entries = [OutboxEntry.parse(i, f) for i, f in redis_client.xrange(Keys().outbox)]
    asyncio.run(ArchiveConsumer(service.store, ArchiveWriter(engine)).handle(entries))
    redis_client.flushall()
    assert console.sign_in().status_code == 303

    page = console.client.get(f"/console/sessions/{created.session_id}")
    assert page.status_code == 200
    html = page.text
    assert "Two boxes of tea, please" in html
    assert 'badge-archived">archived</span>' in html
    assert "shown read-only from the SQL archive" in html
    assert "badge-completed" in html
    assert "hx-get" not in html.split('id="chat"', 1)[1].split(">", 1)[0]
    for action in ("/complete", "/expire", "/take-over", "/reply", "/analyse"):
        assert f"{created.session_id}{action}" not in html


def test_a_session_in_neither_redis_nor_the_archive_is_not_found(
    make_console: MakeConsole, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    db.upgrade(url)
    console = make_console(archive=ArchiveReader(db.build_engine(url)))
    assert console.sign_in().status_code == 303
    page = console.client.get("/console/sessions/00000000-0000-4000-8000-000000000000")
    assert page.status_code == 404


def test_an_unreachable_archive_is_a_readable_503_page(
    make_console: MakeConsole, tmp_path: Path
) -> None:
    """A database that cannot be opened answers the console's error page, not a trace."""
    missing = tmp_path / "no-such-directory" / "archive.db"
    console = make_console(archive=ArchiveReader(create_engine(f"sqlite:///{missing}")))
    assert console.sign_in().status_code == 303
    page = console.client.get("/console/sessions/00000000-0000-4000-8000-000000000000")
    assert page.status_code == 503
    assert "The session archive cannot be reached" in page.text
