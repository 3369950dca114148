"""The Procfile's processes started for real (each line run as a Procfile runner would), on a
private Redis and loopback ports, driven over HTTP with requests the twilio SDK signs."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from tools.demo import TwilioSimulator
from wa_sessions.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
AUTH_TOKEN = "e2e-twilio-token"
ADMIN_TOKEN = "e2e-admin-token-of-32-characters-or-more"
#: The https URL Twilio would call (and sign) in front of the processes, which serve plain
#: HTTP on loopback: production refuses to start without one.
PUBLIC_URL = "https://wa-e2e.example.test"

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
    """Web, worker, scheduler and outbox processes, each started from its Procfile line, over
    a Redis and an SQLite archive of this test's own (migrated first, as ``./run serve``
    does)."""

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
                "PUBLIC_BASE_URL": PUBLIC_URL,
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
                "WORKER_PROCESSES": "2",
                "WORKER_THREADS": "4",
                "LEASE_SECONDS": "2",
                "REDRIVE_INTERVAL_SECONDS": "0.5",
                # The loads here post several messages a second per phone, far above a
                # person's: the per-phone limit is checked on every request but never reached
                # (its own tests set it low).
                "INGEST_MESSAGES_PER_MINUTE": "60000",
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                "DATABASE_URL": f"sqlite:///{self.tmp / 'archive.db'}",
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
        self.migrate()
        for name in ("web", "worker", "scheduler", "outbox"):
            self.start(name)
        self.wait_healthy()
        return self

    def migrate(self) -> None:
        """``wa-sessions db upgrade`` on the archive, before any process uses it."""
        subprocess.run(
            [sys.executable, "-m", "wa_sessions.cli", "db", "upgrade"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            timeout=120,
            check=True,
        )

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
        group = _process_tree(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
        if sig == signal.SIGKILL:
            _wait_gone(group, 30)

    def stop(self, name: str) -> None:
        """SIGTERM to the process group, then waits for every process of it (``/bin/sh`` does
        not exec the command, so the shell exits long before a gracefully stopping worker)."""
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        group = _process_tree(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        if _wait_gone(group, 20):
            for member in group:
                with contextlib.suppress(psutil.Error):
                    member.kill()
            _wait_gone(group, 10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

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
            public_base_url=PUBLIC_URL,
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


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _wait_gone(procs: list[psutil.Process], timeout_seconds: float) -> list[psutil.Process]:
    """Waits until none of ``procs`` runs (zombies count as gone); returns those still alive."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        alive = []
        for member in procs:
            with contextlib.suppress(psutil.Error):
                if member.is_running() and member.status() != psutil.STATUS_ZOMBIE:
                    alive.append(member)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


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


# ---- Prometheus (promtool and a server of the test's own) ---------------------------------


@dataclass(frozen=True)
class PrometheusTools:
    promtool: Path
    prometheus: Path


def _which_prometheus() -> PrometheusTools | None:
    promtool, server = shutil.which("promtool"), shutil.which("prometheus")
    if promtool and server:
        return PrometheusTools(Path(promtool), Path(server))
    return None


def find_or_install_prometheus() -> PrometheusTools:
    """``promtool`` and ``prometheus`` from PATH, else Debian's ``prometheus`` package installed
    with apt-get when running as root (as CI does). Otherwise the tests fail, naming the command
    that installs them: a dashboard whose queries were never run is not a passing test."""
    found = _which_prometheus()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            "promtool and prometheus are not on PATH; install them with "
            "`sudo apt-get install prometheus` (Debian/Ubuntu) or put the binaries from "
            "https://prometheus.io/download/ on PATH",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        # A fresh machine may not have the package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"apt-get install prometheus failed:\n{result.stdout}\n{result.stderr}")
    found = _which_prometheus()
    if found is None:
        pytest.fail("the prometheus package installed no promtool/prometheus on PATH")
    return found


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    return find_or_install_prometheus()


class PrometheusServer:
    """A Prometheus server on a free loopback port with its own config and storage directory
    (never the system one a package install may have started), queried over its HTTP API."""

    def __init__(
        self,
        binary: Path,
        tmp: Path,
        targets: list[str],
        *,
        rule_files: list[Path] | None = None,
        interval_seconds: float = 1.0,
        credentials_file: Path | None = None,
    ) -> None:
        self.binary = binary
        self.dir = tmp / "prometheus-server"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.log_path = self.dir / "prometheus.log"
        interval = f"{int(interval_seconds * 1000)}ms"
        scrape: dict[str, Any] = {
            "job_name": "wa-sessions",
            "scrape_timeout": interval,
            "static_configs": [{"targets": targets}],
        }
        if credentials_file is not None:
            # As deploy/prometheus/prometheus.yml does for METRICS_TOKEN.
            scrape["authorization"] = {"type": "Bearer", "credentials_file": str(credentials_file)}
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in rule_files or []],
            "scrape_configs": [scrape],
        }
        # JSON is YAML: no YAML writer needed.
        (self.dir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_seconds: float = 30.0) -> PrometheusServer:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    f"--config.file={self.dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            ready = f"{self.url}/-/ready"
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("prometheus did not become ready:\n" + self.log())

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a Prometheus HTTP API answer (fails the test on an error status)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as resp:  # noqa: S310
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples, as ``[{"metric": {...}, "value": [ts, "v"]}]``."""
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])


@pytest.fixture
def prometheus_factory(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> Iterator[Callable[..., PrometheusServer]]:
    """Starts Prometheus servers scraping the given targets; stops them after the test."""
    started: list[PrometheusServer] = []

    def make(targets: list[str], **kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(prometheus_tools.prometheus, tmp_path, targets, **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
