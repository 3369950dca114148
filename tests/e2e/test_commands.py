"""The README's run command (``wa-sessions serve``: honcho, the Procfile and an embedded Redis)
and the demo that plays a conversation against it (``python -m tools.demo``, outside the
installed package, run from the repository)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import poll
from wa_sessions.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_serve_runs_every_process_and_the_demo_prints_sessions_archived_in_run(
    tmp_path: Path,
) -> None:
    """`wa-sessions serve` with no REDIS_URL starts its own Redis and migrates the default
    SQLite archive in .run/ first; `./run demo` shows sessions, extracted orders and the
    replies recorded for them, and the outbox process archives the ended ones there."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("TWILIO_", "ADMIN_", "REDIS_", "ENVIRONMENT", "PUBLIC_BASE", "OPENAI_")
        )
    }
    env["PORT"] = str(port)
    cli = [sys.executable, "-m", "wa_sessions.cli"]
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            [*cli, "serve", "--procfile", str(ROOT / "Procfile")],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and not healthy:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r,
            ):
                healthy = r.status == 200
            time.sleep(0.2)
        assert healthy, (tmp_path / "serve.log").read_text()
        demo = subprocess.run(
            [sys.executable, "-m", "tools.demo", "--timeout", "30"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert demo.stdout.count("\nsession ") >= 4
        assert "I need 5 units of Product A" in demo.stdout
        # Offline defaults: orders extracted by rules, replies recorded but not sent.
        assert "-> [text] ✅ Order received: 6 units of Product A  (not_sent)" in demo.stdout
        assert '"name": "Product A", "quantity": 6' in demo.stdout
        assert "a message after completion opened a new session" in demo.stdout
        # Secrets and message bodies: the owner's alone (created so, under any umask).
        run_dir = tmp_path / ".run"
        assert stat.S_IMODE((run_dir / "dev.env").stat().st_mode) == 0o600
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((run_dir / "redis").stat().st_mode) == 0o700
        assert "REDIS_URL=redis://:" in (run_dir / "dev.env").read_text()
        assert "archive database migrated" in (tmp_path / "serve.log").read_text()
        poll(lambda: _archived_sessions(run_dir / "archive.db") >= 1, timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


def _archived_sessions(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM archived_sessions").fetchone()[0])


def test_run_without_a_command_prints_its_commands_and_nothing_else() -> None:
    """``./run`` alone lists the commands (its header comment), not the script's first line of
    code; an unknown command says so and exits 2."""
    shown = subprocess.run(
        [str(ROOT / "run")], capture_output=True, text=True, timeout=30, check=False
    )
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("The project's commands.")
    assert [line.split()[1] for line in lines[1:]] == ["serve", "test", "demo", "lint", "bench"]
    assert "set -euo pipefail" not in shown.stdout

    unknown = subprocess.run(
        [str(ROOT / "run"), "nonsense"], capture_output=True, text=True, timeout=30, check=False
    )
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("unknown command: nonsense\n")


def test_the_venv_run_builds_has_setuptools_upgraded_with_pip() -> None:
    """``./run`` upgrades setuptools along with pip: the copy a Python 3.11 venv starts with
    (65.5) has known advisories."""
    major = int(importlib.metadata.version("setuptools").split(".")[0])
    assert major >= 70
    assert "--upgrade pip setuptools" in (ROOT / "run").read_text()


def test_demo_without_a_service_says_how_to_start_one(tmp_path: Path) -> None:
    """Against a port nobody listens on, the demo exits 1 with a hint naming ``./run serve``,
    not a ``URLError`` traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    demo = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--url", url],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo.returncode == 1
    assert "Traceback" not in demo.stderr
    assert f"the service is not running at {url}" in demo.stderr
    assert "./run serve" in demo.stderr
