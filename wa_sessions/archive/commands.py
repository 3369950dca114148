"""``wa-sessions db ...``: the archive's migrations (``upgrade``, ``downgrade``, ``current``),
its retention (``retention --older-than-days N``) and a customer's erasure (``erase --phone
+1...``). They run next to the service with the operators' settings (``.run/dev.env`` in
development) and print counts, never the phone number."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from wa_sessions import bootstrap, bootstrap_outbox
from wa_sessions.archive import db, maintenance
from wa_sessions.errors import WaSessionsError


def add_db_commands(sub: Any) -> None:
    p_db = sub.add_parser("db", help="the SQL archive: migrations, retention, erasure")
    db_sub = p_db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="migrate DATABASE_URL to a revision (default head)")
    up.add_argument("--revision", default="head")
    up.set_defaults(run=_upgrade)
    down = db_sub.add_parser("downgrade", help="migrate DATABASE_URL down to a revision")
    down.add_argument("--revision", required=True, help="e.g. base, or -1")
    down.set_defaults(run=_downgrade)
    db_sub.add_parser("current", help="print the database's revision").set_defaults(run=_current)
    ret = db_sub.add_parser("retention", help="delete archived sessions ended N days ago or more")
    ret.add_argument("--older-than-days", type=_positive, required=True)
    ret.set_defaults(run=_retention)
    erase = db_sub.add_parser("erase", help="delete every session of one phone, everywhere")
    erase.add_argument("--phone", required=True)
    erase.set_defaults(run=_erase)


def _positive(value: str) -> float:
    days = float(value)
    if not days > 0:
        raise argparse.ArgumentTypeError("must be a number of days above 0")
    return days


def _url() -> str:
    return bootstrap.load_operator_settings().database_url


def _upgrade(args: argparse.Namespace) -> int:
    db.upgrade(_url(), args.revision)
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    db.downgrade(_url(), args.revision)
    return 0


def _current(_args: argparse.Namespace) -> int:
    print(db.current_revision(_url()) or "base")
    return 0


def _retention(args: argparse.Namespace) -> int:
    engine = db.build_engine(_url())
    try:
        deleted = maintenance.apply_retention(engine, datetime.now(UTC), args.older_than_days)
    finally:
        engine.dispose()
    print(f"deleted {deleted} archived session(s)")
    return 0


def _erase(args: argparse.Namespace) -> int:
    try:
        erased = bootstrap_outbox.erase_phone(bootstrap.load_operator_settings(), args.phone)
    except WaSessionsError as exc:
        print(f"erase: {exc}", file=sys.stderr)
        return 2
    print(
        f"deleted {erased.redis_sessions} session(s) from Redis, {erased.outbox_entries} "
        f"outbox entries, {erased.archived_sessions} archived session(s)"
    )
    return 0


def migrate_for_serve(url: str) -> bool:
    """``serve`` migrates the archive before the processes start; False (and one line) when
    the database cannot be reached or migrated."""
    try:
        db.upgrade(url)
    except (SQLAlchemyError, OSError) as exc:
        print(f"refusing to start: the archive database failed to migrate: {exc}", file=sys.stderr)
        return False
    print("archive database migrated")
    return True
