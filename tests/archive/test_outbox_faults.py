"""Faults of the archive path with the real ``outbox`` process (``python -m wa_sessions.outbox``
as the Procfile starts it): SIGKILL mid-batch, and PostgreSQL stopped for 10 s while sessions
keep ending. Nothing lost, nothing written twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession

from tests.archive.postgres import PrivatePostgres
from wa_sessions.archive import db
from wa_sessions.archive.models import ArchivedMessage, ArchivedSession
from wa_sessions.statemachine import SessionCreate, SessionService
from wa_sessions.statemachine.redis.keys import Keys

BUSINESS = "+14155238886"


def start_outbox(redis_url: str, database_url: str, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "BUSINESS_NUMBER": BUSINESS,
        "OUTBOX_CONSUMER_NAME": name,
        "OUTBOX_CLAIM_IDLE_SECONDS": "1",
        "OUTBOX_RETRY_SECONDS": "0.2",
        "OUTBOX_BATCH_SIZE": "20",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "wa_sessions.outbox"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not reached before the deadline"
        time.sleep(0.1)


def archived(database_url: str) -> tuple[int, int]:
    engine = db.build_engine(database_url)
    try:
        with OrmSession(engine) as orm:
            return (
                orm.scalar(select(func.count()).select_from(ArchivedSession)) or 0,
                orm.scalar(select(func.count()).select_from(ArchivedMessage)) or 0,
            )
    except Exception:  # the database is down: nothing readable yet
        return (-1, -1)
    finally:
        engine.dispose()


def end_sessions(service: SessionService, first: int, n: int) -> None:
    for i in range(first, first + n):
        s = service.create_session(
            SessionCreate(phone_number=f"+1415555{i:04d}", initial_message=f"order {i}")
        )
        service.complete_session(s.session_id)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)


def test_an_outbox_process_killed_mid_batch_loses_and_duplicates_nothing(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path, processes: list[Any]
) -> None:
    """SIGKILL while it archives; a second process takes its pending entries over."""
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    db.upgrade(url)
    service = SessionService(redis_client, business_number=BUSINESS)
    end_sessions(service, 0, 300)
    first = start_outbox(redis_url, url, "first")
    processes.append(first)
    wait_for(lambda: archived(url)[0] > 0, 30)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    done_at_kill = archived(url)[0]
    end_sessions(service, 300, 50)
    processes.append(start_outbox(redis_url, url, "second"))
    wait_for(lambda: archived(url) == (350, 350), 60)
    assert done_at_kill < 350
    wait_for(lambda: redis_client.xpending(Keys().outbox, "archive")["pending"] == 0, 30)


def test_postgresql_stopped_for_ten_seconds_leaves_entries_pending_then_archives_them_once(
    redis_client: redis.Redis, redis_url: str, processes: list[Any]
) -> None:
    """Sessions keep ending during the outage; afterwards each is archived exactly once."""
    server = PrivatePostgres().init()
    server.start()
    try:
        url = server.url
        db.upgrade(url)
        service = SessionService(redis_client, business_number=BUSINESS)
        processes.append(start_outbox(redis_url, url, "pg"))
        end_sessions(service, 0, 50)
        wait_for(lambda: archived(url) == (50, 50), 30)
        server.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < 10:
            end_sessions(service, 50 + int((time.monotonic() - stopped) * 10) * 10, 10)
            time.sleep(0.5)
        pending = redis_client.xpending(Keys().outbox, "archive")["pending"]
        server.start()
        total_sessions = int(redis_client.zcard(Keys().status_index("completed")))
        wait_for(lambda: archived(url) == (total_sessions, total_sessions), 60)
        assert pending > 0
    finally:
        server.destroy()
