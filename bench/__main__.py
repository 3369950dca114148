"""Benchmarks: ``./run bench`` (or ``python -m bench``). Starts its own private Redis and the
service's real processes on loopback, runs bounded loads, prints figures and writes them to
``docs/BENCHMARKS.md``. Every rate sits beside the baseline it should be compared with,
measured in the same run, because this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from wa_sessions.demo import TwilioSimulator, new_message_sid
from wa_sessions.embedded_redis import EmbeddedRedis, free_port
from wa_sessions.statemachine.inbox import Inbox
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.store import to_ms

ROOT = Path(__file__).resolve().parents[1]
AUTH_TOKEN = "bench-twilio-token"
ADMIN_TOKEN = "bench-admin-token"
BUSINESS = "+14155238886"
BODY = "I need 5 units of Product A and 2 boxes of apples, delivered to 221B Baker Street. " * 3


class RoundTrips:
    """Counts Redis round trips by counting packed sends (a pipeline is one send)."""

    def __init__(self) -> None:
        self.count = 0
        self._original: Callable[..., Any] | None = None

    def __enter__(self) -> RoundTrips:
        from redis.connection import AbstractConnection

        original = AbstractConnection.send_packed_command
        self._original = original
        counter = self

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            original(conn, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from redis.connection import AbstractConnection

        AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign]


def phone(i: int) -> str:
    return f"+1415{i:07d}"


def bench_add_message(url: str, n: int) -> dict[str, float]:
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    service = SessionService(client)
    service.add_message(phone(0), "warm-up")
    with RoundTrips() as trips:
        start = time.perf_counter()
        for i in range(n):
            service.add_message(phone(i % 1000), BODY)
        elapsed = time.perf_counter() - start
    conv = service.conversation(phone(1))
    with RoundTrips() as apply_trips:
        start = time.perf_counter()
        for i in range(n):
            service.store.apply_message(
                conv.key,
                Message(id=f"m{i}", content=BODY, timestamp=datetime.now(UTC)),
                ts_ms=to_ms(datetime.now(UTC)),
                now_ms=to_ms(datetime.now(UTC)),
                new_session_id="s",
                timeout_ms=service.timeout_ms,
                cap=10**9,
                keep_ms=service.keep_ms,
            )
        apply_elapsed = time.perf_counter() - start
    return {
        "add_message_per_s": n / elapsed,
        "add_message_round_trips": trips.count / n,
        "apply_per_s": n / apply_elapsed,
        "apply_round_trips": apply_trips.count / n,
    }


def bench_drain(url: str, phones: int, per_phone: int) -> dict[str, float]:
    """Preload through the ingest path, then drain every phone in this one process."""
    from wa_sessions.workers.handlers import WorkerDeps, drain_conversation

    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    service = SessionService(client)
    inbox = Inbox(service.store)
    convs = [service.conversation(phone(p)).key for p in range(phones)]
    now = datetime.now(UTC)
    with RoundTrips() as ingest_trips:
        start = time.perf_counter()
        for _k in range(per_phone):
            for conv in convs:
                inbox.accept(
                    conv,
                    Message(id=new_message_sid(), content=BODY, timestamp=now),
                    accepted_ms=to_ms(now),
                )
        ingest_elapsed = time.perf_counter() - start
    deps = WorkerDeps(service, inbox, wake=lambda conv: None)
    total = phones * per_phone
    with RoundTrips() as trips:
        start = time.perf_counter()
        applied = sum(drain_conversation(deps, conv).applied for conv in convs)
        elapsed = time.perf_counter() - start
    assert applied == total, (applied, total)
    return {
        "ingest_per_s": total / ingest_elapsed,
        "ingest_round_trips": ingest_trips.count / total,
        "drain_per_s": total / elapsed,
        "drain_round_trips": trips.count / total,
    }


class Processes:
    """The Procfile's processes (or a bare baseline app) on a private Redis."""

    def __init__(self, redis_url: str, tmp: Path) -> None:
        self.redis_url = redis_url
        self.tmp = tmp
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            ENVIRONMENT="production",
            REDIS_URL=self.redis_url,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            ADMIN_TOKEN=ADMIN_TOKEN,
            PUBLIC_BASE_URL=f"http://127.0.0.1:{self.port}",
            PORT=str(self.port),
            HOST="127.0.0.1",
            WORKER_PROCESSES="2",
            WORKER_THREADS="8",
        )
        env.update(extra)
        return env

    def procfile(self, name: str) -> str:
        for line in (ROOT / "Procfile").read_text().splitlines():
            key, _, command = line.partition(":")
            if key.strip() == name:
                return command.strip()
        raise KeyError(name)

    def start(self, name: str, command: str | None = None, **extra: str) -> None:
        with (self.tmp / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                ["/bin/sh", "-c", command or self.procfile(name)],
                cwd=ROOT,
                env=self.env(**extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_http(self, path: str, timeout_seconds: float = 30) -> None:
        sim = self.simulator()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if sim.request("GET", path).status < 500:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{path} never answered")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def simulator(self) -> TwilioSimulator:
        base = f"http://127.0.0.1:{self.port}"
        return TwilioSimulator(base, AUTH_TOKEN, ADMIN_TOKEN, public_base_url=base)


_WRK_SCRIPT = r"""
local bodies = {}
local sigs = {}
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local sig, body = line:match("^(%S+) (.*)$")
    table.insert(sigs, sig)
    table.insert(bodies, body)
  end
  f:close()
  -- Threads start far apart in the file so they never send the same MessageSid.
  counter = (tonumber(args[2]) or 0) + tid * math.floor(#bodies / 2)
end
function request()
  counter = counter + 1
  local i = (counter % #bodies) + 1
  return wrk.format("POST", "/twilio-webhook-opt", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Twilio-Signature"] = sigs[i],
  }, bodies[i])
end
"""


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=False,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("wrk")


def write_requests(sim: TwilioSimulator, path: Path, count: int, phones: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            form = sim.inbound_form(phone(10_000 + i % phones), BODY)
            body, headers = sim.signed_request(form)
            out.write(f"{headers['X-Twilio-Signature']} {body.decode()}\n")


def run_wrk(
    wrk: str, port: int, requests_file: Path, seconds: int, connections: int, rate_offset: int
) -> dict[str, float]:
    script = requests_file.with_suffix(".lua")
    script.write_text(_WRK_SCRIPT)
    out = subprocess.run(
        [
            wrk,
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(requests_file),
            str(rate_offset),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    return parse_wrk(out)


def _ms(value: str) -> float:
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    for unit in ("us", "ms", "s"):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * units[unit]
    return float(value)


def parse_wrk(out: str) -> dict[str, float]:
    result: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if line.strip().startswith("50%"):
            result["p50_ms"] = _ms(parts[1])
        elif line.strip().startswith("99%"):
            result["p99_ms"] = _ms(parts[1])
        elif line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif "Non-2xx" in line:
            result["non_2xx"] = float(parts[-1])
        elif "requests in" in line:
            result["requests"] = float(parts[0])
    return result


BARE_APP = "bench.bare:app"


def bench_webhook(
    url: str, tmp: Path, wrk: str, seconds: int, runs: int
) -> dict[str, list[dict[str, float]]]:
    """The webhook with no worker running, beside a bare ASGI endpoint on the same server."""
    results: dict[str, list[dict[str, float]]] = {"webhook": [], "bare": []}
    procs = Processes(url, tmp)
    sim = procs.simulator()
    requests_file = tmp / "requests.txt"
    write_requests(sim, requests_file, 60_000, phones=2000)
    web = procs.procfile("web")
    bare = web.replace("--factory wa_sessions.bootstrap:create_app", BARE_APP)
    try:
        for run in range(runs):
            for name, command in (("webhook", web), ("bare", bare)):
                redis.Redis.from_url(url).flushall()
                procs.start(name, command)
                procs.wait_http("/healthz")
                results[name].append(
                    run_wrk(wrk, procs.port, requests_file, seconds, 64, run * 20_000)
                )
                procs.stop(name)
    finally:
        procs.stop_all()
    return results


def bench_end_to_end(url: str, tmp: Path, wrk: str, seconds: int) -> dict[str, float]:
    """Web, 2 worker processes and the scheduler: post at full speed, time until all applied."""
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    procs = Processes(url, tmp)
    sim = procs.simulator()
    requests_file = tmp / "e2e.txt"
    write_requests(sim, requests_file, 60_000, phones=2000)
    try:
        procs.start("worker")
        procs.start("scheduler")
        procs.start("web")
        procs.wait_http("/healthz")
        start = time.monotonic()
        load = run_wrk(wrk, procs.port, requests_file, seconds, 32, 0)
        posted_done = time.monotonic()
        service = SessionService(client)
        accepted = min(load.get("requests", 0), 60_000)
        deadline = time.monotonic() + 120
        applied = 0
        while time.monotonic() < deadline:
            applied = sum(
                int(client.hget(service.store.keys.session(s), "count") or 0)
                for s in client.zrange(service.store.keys.all, 0, -1)
            )
            if applied >= accepted:
                break
            time.sleep(0.2)
        finished = time.monotonic()
    finally:
        procs.stop_all()
    return {
        "posted": accepted,
        "applied": applied,
        "post_rps": load.get("rps", 0.0),
        "applied_per_s": applied / (finished - start),
        "drain_tail_s": finished - posted_done,
    }


@contextlib.contextmanager
def private_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.cleanup()


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


Say = Callable[..., None]


def store_section(url: str, args: argparse.Namespace, say: Say) -> None:
    say("## Store (one Python process)")
    say()
    store = [bench_add_message(url, args.messages) for _ in range(args.runs)]
    say("| figure | value |")
    say("| --- | --- |")
    for key, label in (
        ("add_message_per_s", "`SessionService.add_message` messages/s"),
        ("add_message_round_trips", "round trips per `add_message` (apply + read back)"),
        ("apply_per_s", "`store.apply_message` messages/s"),
        ("apply_round_trips", "round trips per apply"),
    ):
        say(f"| {label} | {spread([r[key] for r in store])} |")
    say()


def drain_section(url: str, args: argparse.Namespace, say: Say) -> None:
    say("## Ingest and drain (one Python process, no HTTP)")
    say()
    say("| shape | ingest/s | RTT/ingest | drain applied/s | RTT/applied |")
    say("| --- | --- | --- | --- | --- |")
    for label, phones, per_phone in (
        ("20 messages per phone", 500, 20),
        ("1 per phone", 10_000, 1),
    ):
        runs = [bench_drain(url, phones, per_phone) for _ in range(args.runs)]
        say(
            f"| {label} | {spread([r['ingest_per_s'] for r in runs])} "
            f"| {spread([r['ingest_round_trips'] for r in runs])} "
            f"| {spread([r['drain_per_s'] for r in runs])} "
            f"| {spread([r['drain_round_trips'] for r in runs])} |"
        )
    say()


def webhook_section(url: str, tmp: Path, wrk: str, args: argparse.Namespace, say: Say) -> None:
    say(
        "## Webhook (uvicorn as in the Procfile, wrk 2 threads x 64 connections, "
        f"{args.seconds} s, no worker)"
    )
    say()
    web = bench_webhook(url, tmp, wrk, args.seconds, args.runs)
    say("| endpoint | requests/s | p50 ms | p99 ms | non-2xx |")
    say("| --- | --- | --- | --- | --- |")
    for name, label in (
        ("webhook", "`POST /twilio-webhook-opt`"),
        ("bare", "bare ASGI form parse + `<Response/>`"),
    ):
        say(
            f"| {label} | {spread([r.get('rps', 0) for r in web[name]])} "
            f"| {spread([r.get('p50_ms', 0) for r in web[name]])} "
            f"| {spread([r.get('p99_ms', 0) for r in web[name]])} "
            f"| {sum(r.get('non_2xx', 0) for r in web[name]):.0f} |"
        )
    ratio = statistics.median([r.get("rps", 0) for r in web["webhook"]]) / max(
        1.0, statistics.median([r.get("rps", 0) for r in web["bare"]])
    )
    say()
    say(f"Webhook / bare endpoint (median requests/s): {ratio:.0%}")
    say()


def e2e_section(url: str, tmp: Path, wrk: str, args: argparse.Namespace, say: Say) -> None:
    say(
        "## End to end (web + 2 worker processes x 8 threads + scheduler, "
        f"{args.seconds} s of load)"
    )
    say()
    e2e = bench_end_to_end(url, tmp, wrk, args.seconds)
    say("| figure | value |")
    say("| --- | --- |")
    for key in ("posted", "applied", "post_rps", "applied_per_s", "drain_tail_s"):
        say(f"| {key} | {e2e[key]:.1f} |")
    say()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--output", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument(
        "--only", choices=["store", "drain", "webhook", "e2e"], help="run one section only"
    )
    args = parser.parse_args(argv)
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    with private_redis() as server, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        info = redis.Redis.from_url(server.url).info("server")
        say("# Benchmarks")
        say()
        say(f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; command: `./run bench`")
        say(f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
        say(f"- Python {platform.python_version()}, Redis {info['redis_version']}")
        say(f"- figures: min / median / max of {args.runs} runs")
        say()
        sections = {args.only} if args.only else {"store", "drain", "webhook", "e2e"}
        if "store" in sections:
            store_section(server.url, args, say)
        if "drain" in sections:
            drain_section(server.url, args, say)
        if sections & {"webhook", "e2e"}:
            wrk = ensure_wrk()
            if wrk is None:
                say("wrk is not installed and could not be installed: HTTP figures skipped.")
            else:
                if "webhook" in sections:
                    webhook_section(server.url, tmp, wrk, args, say)
                if "e2e" in sections:
                    e2e_section(server.url, tmp, wrk, args, say)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
