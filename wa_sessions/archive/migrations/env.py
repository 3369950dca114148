"""Alembic's environment for the archive: the URL comes from the config ``db.py`` builds (from
``DATABASE_URL``); batch mode lets SQLite run the same ALTERs as PostgreSQL."""

from __future__ import annotations

from alembic import context

from wa_sessions.archive.db import build_engine
from wa_sessions.archive.models import Base

config = context.config
engine = build_engine(config.get_main_option("sqlalchemy.url") or "")
try:
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
finally:
    engine.dispose()
