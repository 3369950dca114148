"""End to end: paced webhooks for a fixed time with web, worker and scheduler running; the lag
from acceptance to applied for every message, the backlog over time and the cost per message.

Lag: the acceptance time is each stored message's ``timestamp`` (the webhook's clock when it
took the request); the applied time is when Redis announced the pop of its inbox entry
(``bench.lagprobe``), which happens inside the drain's atomic apply step. The service's own
``wa_sessions_queue_lag_seconds`` histogram (from the web's ``/metrics``) is shown beside it as a
cross-check; it stops its clock when a drain batch starts, so it reads a little lower.

Backlog: accepted-but-not-applied messages every 100 ms, exactly, from the same two times;
plus samples of the pending-conversation index and the Dramatiq queue's length. It counts as
flat when its least-squares growth over the load is under 0.2 s worth of the offered traffic
and everything is applied within 1 s of the load's end.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
import redis

from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.workers.queues import NAMESPACE, QUEUE

from . import lagprobe
from .load import LoadResult, percentile, run_paced, slope
from .procs import Processes, RedisSnapshot

FLAT_GROWTH_SECONDS = 0.2
FLAT_TAIL_SECONDS = 1.0


@dataclass
class E2ERun:
    rate: float
    load: LoadResult
    accepted: int
    applied: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    #: Least-squares growth of the exact backlog over the load, in seconds of offered traffic.
    backlog_growth_s: float
    backlog_max: int
    pending_max: int
    queue_max: int
    #: From the last acceptance to the last message applied.
    tail_s: float
    histogram_share_100ms: float
    cpu_us: dict[str, float] = field(default_factory=dict)
    redis: dict[str, float] = field(default_factory=dict)
    probe_cpu_us: float = 0.0

    @property
    def delivered(self) -> float:
        """Share of the offered rate the webhook actually answered."""
        return self.load.rps / self.rate if self.rate else 0.0

    @property
    def flat(self) -> bool:
        return self.backlog_growth_s <= FLAT_GROWTH_SECONDS and self.tail_s <= FLAT_TAIL_SECONDS


class Sampler(threading.Thread):
    """Samples the pending-conversation index and the Dramatiq queue four times a second."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.keys = keys
        self.samples: list[tuple[float, int, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        queue = f"{NAMESPACE}:{QUEUE}"
        while not self.stopping.wait(0.25):
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(self.keys.pending)
            pipe.llen(queue)
            pending, queued = pipe.execute()
            self.samples.append((time.time(), int(pending), int(queued)))


def _histogram(procs: Processes) -> tuple[float, float]:
    """(count, count at or under 0.1 s) of the service's queue-lag histogram."""
    text = procs.simulator().request("GET", "/metrics").body.decode()
    count = under = 0.0
    for line in text.splitlines():
        if line.startswith("wa_sessions_queue_lag_seconds_count"):
            count = float(line.split()[-1])
        elif line.startswith('wa_sessions_queue_lag_seconds_bucket{le="0.1"}'):
            under = float(line.split()[-1])
    return count, under


_TIMESTAMP = re.compile(r'"timestamp":"([^"]+)"')
# Inbound is the model's default direction, so a compact encoding may leave it out.
_OUTBOUND = '"direction":"outbound"'


def inbound_timestamps(client: redis.Redis, keys: Keys, conv: str) -> list[float]:
    """Acceptance times of a conversation's inbound messages, in the order they were applied
    (sessions by creation, messages in list order; replies and other outbound skipped)."""
    stamps: list[float] = []
    for sid in client.zrange(keys.conv_sessions(conv), 0, -1):
        for raw in client.lrange(keys.session_messages(conv, str(sid)), 0, -1):
            text = str(raw)
            found = _TIMESTAMP.search(text)
            if found and _OUTBOUND not in text:
                stamps.append(datetime.fromisoformat(found.group(1)).timestamp())
    return stamps


def run_e2e(
    procs: Processes,
    client: redis.Redis,
    wrk: str,
    requests_file: Path,
    seconds: float,
    rate: float,
) -> E2ERun:
    keys = Keys()
    client.flushall()
    client.config_set("notify-keyspace-events", "Kl")
    probe_file = procs.tmp / "probe.bin"
    ready = Path(str(probe_file) + ".ready")
    ready.unlink(missing_ok=True)
    host_port = client.connection_pool.connection_kwargs
    probe = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.lagprobe",
            str(host_port["host"]),
            str(host_port["port"]),
            f"__keyspace@0__:{keys.prefix}c:*:inbox",
            str(probe_file),
        ],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("lag probe did not subscribe")
            time.sleep(0.01)
        sampler = Sampler(client, keys)
        names = ("web", "worker", "scheduler")
        cpu_before = {n: procs.cpu_seconds(n) for n in names}
        redis_before = RedisSnapshot.take(client)
        hist_before = _histogram(procs)
        sampler.start()
        load = run_paced(wrk, procs.port, requests_file, seconds, rate)
        load_start, load_end = load.started_at, load.ended_at
        tail_deadline = time.monotonic() + 120
        while int(client.zcard(keys.pending)) > 0 and time.monotonic() < tail_deadline:
            time.sleep(0.005)
        sampler.stopping.set()
        sampler.join()
        cpu = {n: procs.cpu_seconds(n) - cpu_before[n] for n in names}
        redis_after = RedisSnapshot.take(client)
        hist_after = _histogram(procs)
    finally:
        # Notifications of the last applies are on their way; let the probe read them.
        time.sleep(0.2)
        probe_cpu = 0.0
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(probe.pid).cpu_times()
            probe_cpu = times.user + times.system
        probe.terminate()
        probe.wait(timeout=30)
        client.config_set("notify-keyspace-events", "")
    events = lagprobe.parse(probe_file, keys.prefix)
    accepted_times: list[float] = []
    applied_times: list[float] = []
    lags: list[float] = []
    for conv, by_event in events.items():
        stamps = inbound_timestamps(client, keys, conv)
        popped = by_event.get("lpop", [])
        if len(popped) != len(stamps) or len(by_event.get("rpush", [])) != len(stamps):
            raise RuntimeError(
                f"{conv}: {len(stamps)} inbound messages stored, "
                f"{len(by_event.get('rpush', []))} accepted and {len(popped)} applied seen"
            )
        accepted_times += stamps
        applied_times += popped
        lags += [a - s for s, a in zip(stamps, popped, strict=True)]
    lags.sort()
    accepted_times.sort()
    applied_times.sort()
    # The exact backlog each 100 ms during the load.
    backlog: list[tuple[float, float]] = []
    i = j = 0
    t = load_start
    while t <= load_end:
        while i < len(accepted_times) and accepted_times[i] <= t:
            i += 1
        while j < len(applied_times) and applied_times[j] <= t:
            j += 1
        backlog.append((t - load_start, float(i - j)))
        t += 0.1
    offered = max(load.rps, 1.0)
    in_load = [s for s in sampler.samples if load_start <= s[0] <= load_end]
    messages = max(len(lags), 1)
    count = hist_after[0] - hist_before[0]
    return E2ERun(
        rate=rate,
        load=load,
        accepted=len(accepted_times),
        applied=len(applied_times),
        lag_p50_ms=percentile(lags, 50) * 1000,
        lag_p99_ms=percentile(lags, 99) * 1000,
        lag_max_ms=(lags[-1] if lags else 0.0) * 1000,
        backlog_growth_s=slope(backlog) * (load_end - load_start) / offered,
        backlog_max=int(max((b for _, b in backlog), default=0)),
        pending_max=max((s[1] for s in in_load), default=0),
        queue_max=max((s[2] for s in in_load), default=0),
        tail_s=max(0.0, applied_times[-1] - accepted_times[-1]) if lags else 0.0,
        histogram_share_100ms=(hist_after[1] - hist_before[1]) / count if count else 0.0,
        cpu_us={n: v * 1e6 / messages for n, v in cpu.items()},
        redis=redis_after.since(redis_before, messages),
        probe_cpu_us=probe_cpu * 1e6 / messages,
    )
