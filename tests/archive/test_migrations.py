"""The package's Alembic migrations run up and down on SQLite and on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect

from wa_sessions.archive import db

TABLES = {"archived_sessions", "archived_messages", "archived_deliveries"}


def _tables(url: str) -> set[str]:
    engine = db.build_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_migrations_go_down_to_base_and_up_to_head_again(database_url: str) -> None:
    """Head has the three tables; base has none; head again has them back."""
    assert _tables(database_url) == TABLES
    assert db.current_revision(database_url) == db.head_revision(database_url)
    db.downgrade(database_url, "base")
    assert _tables(database_url) == set()
    assert db.current_revision(database_url) is None
    db.upgrade(database_url)
    assert _tables(database_url) == TABLES
