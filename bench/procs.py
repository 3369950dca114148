"""The service's real processes (the Procfile's lines) on a private Redis, and what they cost:
CPU seconds from the process trees and Redis' own counters before and after a load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from tools.demo import TwilioSimulator
from wa_sessions.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[1]
AUTH_TOKEN = "bench-twilio-token"
ADMIN_TOKEN = "bench-admin-token-of-32-characters-or-more"
#: The https URL Twilio would call and sign, in front of the processes' loopback HTTP.
PUBLIC_URL = "https://wa-bench.example.test"
WORKER_THREADS = 8


@contextlib.contextmanager
def private_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.cleanup()


def procfile(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise KeyError(name)


class Processes:
    """Named process groups started from shell command lines, all on one private Redis.

    Every group gets the environment of a production deployment: real secrets, the public URL
    the simulator signs for, and a fresh ``PROMETHEUS_MULTIPROC_DIR`` shared by the group's
    processes (as ``./run serve`` sets up), so the web's ``/metrics`` shows the workers' totals.
    """

    def __init__(self, redis_url: str, tmp: Path, *, port: int | None = None) -> None:
        self.redis_url = redis_url
        self.tmp = tmp
        self.port = port or free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_dir = tmp / f"prometheus-{self.port}"
        self.metrics_dir.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            ENVIRONMENT="production",
            REDIS_URL=self.redis_url,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            ADMIN_TOKEN=ADMIN_TOKEN,
            PUBLIC_BASE_URL=PUBLIC_URL,
            PORT=str(self.port),
            HOST="127.0.0.1",
            WORKER_PROCESSES="2",
            WORKER_THREADS=str(WORKER_THREADS),
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
            # Checked on every request (its cost measured), never reached by the loads' phones.
            INGEST_MESSAGES_PER_MINUTE="60000",
            dramatiq_prom_db=str(self.metrics_dir),
            PYTHONPATH=str(ROOT),
        )
        env.update(extra)
        return env

    def start(self, name: str, command: str | None = None, **extra: str) -> None:
        with (self.tmp / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                ["/bin/sh", "-c", command or procfile(name)],
                cwd=ROOT,
                env=self.env(**extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def simulator(self) -> TwilioSimulator:
        base = f"http://127.0.0.1:{self.port}"
        return TwilioSimulator(base, AUTH_TOKEN, ADMIN_TOKEN, public_base_url=PUBLIC_URL)

    def wait_http(self, path: str = "/healthz", timeout_seconds: float = 60) -> None:
        sim = self.simulator()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if sim.request("GET", path).status < 500:
                    return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: see {self.tmp / (name + '.log')}")
            time.sleep(0.05)
        raise RuntimeError(f"{path} never answered")

    def tree(self, name: str) -> list[psutil.Process]:
        """The group's live processes: the shell, what it runs and their children."""
        proc = self.procs.get(name)
        if proc is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(proc.pid)
            return [root, *root.children(recursive=True)]
        return []

    def pids(self, name: str) -> list[int]:
        """The Python processes of a group (the shell excluded), for py-spy."""
        return [p.pid for p in self.tree(name) if "python" in _exe(p)]

    def cpu_seconds(self, name: str) -> float:
        """User plus system CPU of the group's live processes since they started."""
        total = 0.0
        for p in self.tree(name):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def stop(self, name: str, *, kill: bool = False) -> None:
        """Ends a group: SIGTERM (SIGKILL after 10 s), or SIGKILL at once with ``kill`` for
        Dramatiq workers, whose graceful stop takes seconds and that hold nothing by then."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # The group may outlive its shell for a moment; wait until it has gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name, kill=name.startswith("worker") or name.startswith("noop"))


def _exe(p: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(p.cmdline()[:1])
    return ""


@dataclass(frozen=True)
class RedisSnapshot:
    """Redis' own counters at one moment (``INFO``)."""

    commands: int
    reads: int
    net_in: int
    net_out: int
    cpu_seconds: float
    calls: dict[str, int]

    @classmethod
    def take(cls, client: redis.Redis) -> RedisSnapshot:
        stats = client.info("stats")
        cpu = client.info("cpu")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in client.info("commandstats").items()
        }
        return cls(
            commands=int(stats["total_commands_processed"]),
            reads=int(stats["total_reads_processed"]),
            net_in=int(stats["total_net_input_bytes"]),
            net_out=int(stats["total_net_output_bytes"]),
            cpu_seconds=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            calls=calls,
        )

    def since(self, before: RedisSnapshot, per: float) -> dict[str, float]:
        """Per-unit deltas: round trips (socket reads with a request, a pipeline is one),
        commands (Lua scripts' inner commands included), script calls, bytes and CPU."""
        scripts = sum(
            n - before.calls.get(name, 0)
            for name, n in self.calls.items()
            if name in ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall")
        )
        per = max(per, 1.0)
        return {
            "redis_round_trips": (self.reads - before.reads) / per,
            "redis_commands": (self.commands - before.commands) / per,
            "redis_scripts": scripts / per,
            "redis_bytes_in": (self.net_in - before.net_in) / per,
            "redis_bytes_out": (self.net_out - before.net_out) / per,
            "redis_cpu_us": (self.cpu_seconds - before.cpu_seconds) * 1e6 / per,
        }
