"""What a development run writes (``wa-sessions serve``: ``.run/dev.env`` with the secrets and
the Redis password) is readable by its owner only, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from wa_sessions.cli import development_env, read_env_file, write_private
from wa_sessions.config import DEV_ENV_FILE, RUN_DIR


@pytest.fixture
def run_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The test's own working directory under a umask that protects nothing."""
    monkeypatch.chdir(tmp_path)
    previous = os.umask(0)
    try:
        yield tmp_path
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_run_directory_is_0700_and_dev_env_0600_as_they_are_created(run_here: Path) -> None:
    """Created with their modes, not narrowed after: under umask 0 nothing is ever 0777/0666,
    and the saved secrets read back."""
    dev = development_env({}, 8123)
    write_private(DEV_ENV_FILE, "REDIS_URL=redis://:pw@127.0.0.1:1/0\n", append=True)
    assert mode(run_here / RUN_DIR) == 0o700
    assert mode(run_here / DEV_ENV_FILE) == 0o600
    saved = read_env_file(DEV_ENV_FILE)
    assert saved["ADMIN_TOKEN"] == dev["ADMIN_TOKEN"]
    assert len(saved["ADMIN_TOKEN"]) >= 32
    assert saved["REDIS_URL"] == "redis://:pw@127.0.0.1:1/0"


def test_an_older_runs_open_directory_and_file_are_narrowed(run_here: Path) -> None:
    """A ``.run`` left 0755 with a 0644 ``dev.env`` (written by an earlier version) is made
    private on the next start; its saved secrets are kept."""
    (run_here / RUN_DIR).mkdir(mode=0o755)
    (run_here / DEV_ENV_FILE).write_text("ADMIN_TOKEN=" + "k" * 32 + "\n")
    (run_here / DEV_ENV_FILE).chmod(0o644)
    dev = development_env({}, 8123)
    assert (mode(run_here / RUN_DIR), mode(run_here / DEV_ENV_FILE)) == (0o700, 0o600)
    assert dev["ADMIN_TOKEN"] == "k" * 32
