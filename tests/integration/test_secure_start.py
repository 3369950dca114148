"""Every process that serves checks its settings at start: the web, the worker (through the
Dramatiq CLI's hook, as the Procfile runs it) and the scheduler, each started as a process of
its own, refuse a short ADMIN_TOKEN before they serve anything."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wa_sessions.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]
SHORT_TOKEN = "only-sixteen-chr"

COMMANDS = {
    "web": [
        *(sys.executable, "-m", "uvicorn", "--factory", "wa_sessions.bootstrap:create_app"),
        *("--host", "127.0.0.1", "--port", str(free_port())),
    ],
    "worker": [
        *(sys.executable, "-m", "dramatiq", "wa_sessions.bootstrap:setup_worker"),
        *("wa_sessions.workers.actors", "--processes", "1", "--threads", "1"),
    ],
    "scheduler": [sys.executable, "-m", "wa_sessions.workers.scheduler"],
}


def production_env(redis_url: str, admin_token: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "ADMIN_", "REDIS_", "PUBLIC_", "ENVIRONMENT"))
    }
    env.update(
        REDIS_URL=redis_url,
        TWILIO_AUTH_TOKEN="t" * 32,
        ADMIN_TOKEN=admin_token,
        PUBLIC_BASE_URL="https://hooks.example.test",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_short_admin_token_stops_the_process_at_start_with_a_clear_message(
    name: str, redis_url: str
) -> None:
    """It exits on its own, non-zero, within seconds, naming the setting and the length it
    needs without quoting the token; nothing was left running to take a message."""
    proc = subprocess.run(
        COMMANDS[name],
        cwd=ROOT,
        env=production_env(redis_url, SHORT_TOKEN),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "ADMIN_TOKEN must be at least 32 characters" in proc.stderr, proc.stderr[-2000:]
    # One line, not a traceback, from every process (uvicorn's factory included).
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert SHORT_TOKEN not in proc.stdout + proc.stderr


def test_the_scheduler_starts_with_a_long_enough_token_and_stops_at_once_on_sigterm(
    redis_url: str,
) -> None:
    """The same environment with a 32-character token: the scheduler runs (so the refusal
    above is the token's), and a SIGTERM the moment it has started, while its first runs are
    being submitted, stops it cleanly (a handler shutting down from inside the executor's lock
    used to hang it)."""
    proc = subprocess.Popen(
        COMMANDS["scheduler"],
        cwd=ROOT,
        env=production_env(redis_url, "a" * 32),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        line = ""
        while "scheduler started" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the scheduler exited"
        assert "scheduler started" in line
        assert proc.poll() is None
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
