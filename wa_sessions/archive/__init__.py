"""The SQL archive of ended sessions (issue #16): SQLAlchemy models, Alembic migrations, the
outbox consumer that writes it and the reads that fall back to it when Redis has lost a
session. See docs/ARCHIVE.md."""
