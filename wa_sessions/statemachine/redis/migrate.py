"""One-off migration of stored sessions to the key layout where a session's hash and history
carry their conversation's hash tag (``keys``), for data written by earlier versions.

    python -m wa_sessions.statemachine.redis.migrate [--batch 500]

Reads ``REDIS_URL`` and ``REDIS_KEY_PREFIX`` like the service. Safe to run twice and while the
service runs (each batch is one script); until it has run, sessions stored the old way are
invisible to the new code (a conversation's next message opens a new session).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import redis

from wa_sessions.config import Settings
from wa_sessions.statemachine.redis import scripts
from wa_sessions.statemachine.redis.keys import Keys


def legacy_session_keys(keys: Keys, session_id: str) -> tuple[str, str]:
    """Where a session's hash and history were stored before the conversation hash tag."""
    return f"{keys.prefix}s:{session_id}", f"{keys.prefix}s:{session_id}:m"


def migrate_sessions(client: redis.Redis, keys: Keys, *, batch: int = 500) -> int:
    """Moves every session of ``idx:all`` still stored the old way; returns how many."""
    script = client.register_script(scripts.source("migrate_sessions", keys))
    moved = 0
    start = 0
    while True:
        ids = [
            x.decode() if isinstance(x, bytes) else str(x)
            for x in client.zrange(keys.all, start, start + batch - 1)
        ]
        if not ids:
            return moved
        items = [[sid, *legacy_session_keys(keys, sid)] for sid in ids]
        keys_, args = scripts.call("migrate_sessions", {}, sessions=items)
        moved += int(script(keys=keys_, args=args))
        start += batch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=500, help="sessions per script call")
    args = parser.parse_args(argv)

    settings = Settings()
    client = redis.Redis.from_url(settings.redis_url)
    moved = migrate_sessions(client, Keys(settings.redis_key_prefix), batch=args.batch)
    print(f"moved {moved} sessions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
