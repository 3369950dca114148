"""The archive's databases: a fresh SQLite file per test and a private PostgreSQL server for
the run (one database per test), each migrated to head by the package's own migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.archive.postgres import PrivatePostgres
from wa_sessions.archive import db


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres().init()
    server.start()
    yield server
    server.destroy()


_counter = iter(range(1_000_000))


def _fresh_postgres_db(server: PrivatePostgres) -> str:
    name = f"archive_{next(_counter)}"
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty archive on each database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'archive.db'}"
    else:
        url = _fresh_postgres_db(request.getfixturevalue("postgres"))
    db.upgrade(url)
    return url


@pytest.fixture
def postgres_url(postgres: PrivatePostgres) -> str:
    url = _fresh_postgres_db(postgres)
    db.upgrade(url)
    return url
