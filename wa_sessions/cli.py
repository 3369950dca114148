"""``wa-sessions serve`` runs the Procfile (web, worker, scheduler, outbox) with honcho, after
the archive's migrations (``wa-sessions db ...``: ``archive/commands.py``), starting an
embedded Redis when ``REDIS_URL`` is not set (``./run demo`` then plays a conversation against it
the way Twilio would: ``tools/demo.py``).

Development runs keep their state in ``.run/``: the embedded Redis' append-only file and
``dev.env`` with generated secrets and the Redis password (signature checks and admin auth stay
on in development). Only the owner may read any of it: the directories are created 0700 and the
file 0600 from the start, never narrowed after being written. Settings decide; the environment
is read here only to pass it on to the child processes.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from wa_sessions.archive.commands import add_db_commands, migrate_for_serve
from wa_sessions.archive.db import absolute_sqlite_url
from wa_sessions.config import DEV_ENV_FILE, RUN_DIR, Environment, InsecureSettings, Settings
from wa_sessions.embedded_redis import EmbeddedRedis, private_directory


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                values[name.strip()] = value.strip()
    return values


def development_env(env: dict[str, str], port: int) -> dict[str, str]:
    """Generated secrets for a development run, kept across runs in .run/dev.env."""
    saved = read_env_file(DEV_ENV_FILE)
    dev = {
        "ENVIRONMENT": "development",
        "TWILIO_AUTH_TOKEN": env.get("TWILIO_AUTH_TOKEN")
        or saved.get("TWILIO_AUTH_TOKEN")
        or secrets.token_hex(16),
        "ADMIN_TOKEN": env.get("ADMIN_TOKEN") or saved.get("ADMIN_TOKEN") or secrets.token_hex(16),
        "PORT": str(port),
        "PUBLIC_BASE_URL": env.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{port}",
    }
    private_directory(RUN_DIR)
    write_private(DEV_ENV_FILE, "".join(f"{k}={v}\n" for k, v in dev.items()))
    return dev


def write_private(path: Path, text: str, *, append: bool = False) -> None:
    """Writes ``text`` to a file only its owner may read: created 0600 (no moment with the
    default umask's 0644), and narrowed to 0600 if an older run left it open."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def serve(args: argparse.Namespace) -> int:
    settings = Settings.load()
    env = dict(os.environ)
    port = int(env.get("PORT", args.port))
    explicit_production = (
        "environment" in settings.model_fields_set
        and settings.environment is Environment.PRODUCTION
    )
    development = not explicit_production and not (
        settings.twilio_auth_token and settings.admin_token
    )
    if not development:
        try:
            settings.check_secure()
        except InsecureSettings as exc:
            print(f"refusing to start: {exc}", file=sys.stderr)
            return 2
    if development:
        env.update(development_env(env, port))
        print(f"development mode: secrets in {DEV_ENV_FILE} (signature checks and auth stay on)")
    private_directory(RUN_DIR)
    env.setdefault("PORT", str(port))
    env.setdefault("HOST", "127.0.0.1")
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")

    redis_server = None
    if "redis_url" not in settings.model_fields_set or not settings.redis_url:
        data = RUN_DIR / "redis"
        redis_server = EmbeddedRedis(appendonly=True, directory=data.resolve()).start()
        env["REDIS_URL"] = redis_server.url
        print(f"embedded Redis on 127.0.0.1:{redis_server.port}, password set (data in {data})")
    metrics_dir = RUN_DIR / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    private_directory(metrics_dir)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if development:
        write_private(DEV_ENV_FILE, f"REDIS_URL={env['REDIS_URL']}\n", append=True)
    print(f"webhook: POST {env['PUBLIC_BASE_URL']}/twilio-webhook-opt")
    # The processes run in the Procfile's directory: the default .run/archive.db must be
    # the one migrated here, next to the embedded Redis.
    env["DATABASE_URL"] = absolute_sqlite_url(env.get("DATABASE_URL") or settings.database_url)
    if not migrate_for_serve(env["DATABASE_URL"]):
        return 2

    procfile = Path(args.procfile).resolve()
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(procfile), "-d", str(procfile.parent)],
        env=env,
    )

    def forward(signum: int, _frame: object) -> None:
        honcho.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                return honcho.wait()
            except KeyboardInterrupt:
                honcho.send_signal(signal.SIGINT)
    finally:
        if redis_server is not None:
            redis_server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wa-sessions")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run web, worker and scheduler (the Procfile)")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--procfile", default="Procfile")
    add_db_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "db":
        return int(args.run(args))
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
