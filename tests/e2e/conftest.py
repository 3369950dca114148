"""The Procfile's processes started for real (each line run as a Procfile runner would), on a
private Redis and loopback ports, driven over HTTP with requests the twilio SDK signs."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from wa_sessions.demo import TwilioSimulator
from wa_sessions.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
AUTH_TOKEN = "e2e-twilio-token"
ADMIN_TOKEN = "e2e-admin-token"

pytestmark = pytest.mark.e2e


def procfile_commands() -> dict[str, str]:
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and not line.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


@dataclass
class Service:
    """Web, worker and scheduler processes, each started from its Procfile line."""

    redis_url: str
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.metrics_dir = self.tmp / "prometheus"
        self.metrics_dir.mkdir(exist_ok=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TWILIO_", "ADMIN_", "REDIS_", "SESSION_", "OPENAI_"))
        }
        env.update(
            {
                "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
                "ENVIRONMENT": "production",
                "REDIS_URL": self.redis_url,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "PUBLIC_BASE_URL": self.base_url,
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
                "WORKER_PROCESSES": "2",
                "WORKER_THREADS": "4",
                "LEASE_SECONDS": "2",
                "REDRIVE_INTERVAL_SECONDS": "0.5",
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                "dramatiq_prom_db": str(self.metrics_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, name: str) -> subprocess.Popen[bytes]:
        command = procfile_commands()[name]
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = proc
        return proc

    def start_all(self) -> Service:
        for name in ("web", "worker", "scheduler"):
            self.start(name)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout_seconds: float = 30.0) -> None:
        sim = self.simulator()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if sim.request("GET", "/healthz").status == 200:
                    return
            if self.processes["web"].poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("web did not become healthy:\n" + self.log("web"))

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def simulator(self) -> TwilioSimulator:
        return TwilioSimulator(
            base_url=self.base_url,
            auth_token=AUTH_TOKEN,
            admin_token=ADMIN_TOKEN,
            public_base_url=self.base_url,
        )

    def run_enqueue(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wa_sessions.workers.enqueue", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def e2e_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, so killing and restarting processes cannot leak state."""
    server = EmbeddedRedis(directory=tmp_path).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def service_factory(e2e_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[type[Service] | object]:
    started: list[Service] = []

    def make(**extra_env: str) -> Service:
        service = Service(redis_url=e2e_redis.url, tmp=tmp_path, extra_env=extra_env)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop_all()


@pytest.fixture
def service(service_factory: object) -> Service:
    return service_factory().start_all()  # type: ignore[operator, no-any-return]


@pytest.fixture
def e2e_client(e2e_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(e2e_redis.url, decode_responses=True)
    yield client
    client.close()


def command_line(name: str) -> list[str]:
    return shlex.split(procfile_commands()[name])
