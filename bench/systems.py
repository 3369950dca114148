"""The systems the replies section compares, run the same way against the same stand-ins: ours
(the Procfile's ``web``, ``worker`` and ``scheduler`` lines with their defaults) and the two
peers in ``bench/peers``; fixed-rate runs and a capacity search for each.

A run: FLUSHALL, the Twilio stand-in's records cleared, then one open-loop load
(``bench.replies``, its own process); meanwhile the Dramatiq queue's length is sampled. After a
run that did not answer everything, the system is left to settle (no request reaching the
stand-ins for longer than one upstream delay) or, if it does not within a few seconds, its
processes are restarted, so no run inherits another's backlog.

Capacity: the highest rate at which a short run answers every message with p99 within the
latency floor (OpenAI's delay plus Twilio's) plus 250 ms and a flat backlog. A step that lost
its p99 while its backlog stayed flat (a stall, not overload) is run once more. The search
starts from what the fixed-rate runs showed (below the throughput a failed run achieved, or
above a rate that held), doubles or halves until it has a rate that holds and one that fails,
then bisects (geometrically) until they are within ``resolution`` of each other or the steps
run out.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import redis

from wa_sessions.workers.queues import QueueKeys

from .peers.common import PEER_QUEUE_KEY
from .procs import AUTH_TOKEN, PUBLIC_URL, WORKER_THREADS, Processes
from .replies import FLAT_GROWTH_SECONDS, LoadConfig, LoadOutcome
from .standins import StandIns

SLACK_SECONDS = 0.25
WARMUP_RATE = 40.0
WARMUP_SECONDS = 2.0
#: A capacity step lasts long enough for this many messages, up to twice its given length.
STEP_MESSAGES = 150
#: A fixed-rate run stops once a message has waited this long unanswered.
ABORT_AGE_SECONDS = 5.0
_UVICORN = "uvicorn {app} --host 127.0.0.1 --port ${{PORT}} --no-access-log --log-level warning"
_DRAMATIQ = (
    "dramatiq {module} --processes ${{WORKER_PROCESSES:-2}} --threads ${{WORKER_THREADS:-8}}"
)


@dataclass(frozen=True)
class System:
    name: str
    label: str
    #: (process name, command line or None for the Procfile's line of that name), started in
    #: order; names starting with "worker" are killed, not stopped, like the bench's others.
    commands: tuple[tuple[str, str | None], ...]
    #: The Dramatiq queue sampled for the backlog.
    queue_key: str


SYSTEMS = {
    "ours": System(
        "ours",
        "ours: inbox + drain (Procfile: web, worker 2 x 8, scheduler)",
        (("worker", None), ("scheduler", None), ("web", None)),
        QueueKeys().ready,
    ),
    "inline": System(
        "inline",
        "peer 1: inline webhook (FastAPI sync route, 1 uvicorn process, 40 threads)",
        (("inline", _UVICORN.format(app="bench.peers.inline:app")),),
        "",
    ),
    "dramatiq_lock": System(
        "dramatiq_lock",
        "peer 2: one Dramatiq message per inbound message, per-phone lock (2 x 8)",
        (
            ("worker-peer", _DRAMATIQ.format(module="bench.peers.dramatiq_lock")),
            ("web-peer", _UVICORN.format(app="bench.peers.dramatiq_lock:app")),
        ),
        PEER_QUEUE_KEY,
    ),
}


@dataclass(frozen=True)
class Delays:
    openai: float
    twilio: float

    @property
    def floor(self) -> float:
        return self.openai + self.twilio

    @property
    def limit(self) -> float:
        return self.floor + SLACK_SECONDS

    @property
    def label(self) -> str:
        return f"OpenAI {self.openai:g} s, Twilio {self.twilio:g} s"


@dataclass
class Run:
    system: str
    delays: Delays
    rate: float
    seconds: float
    outcome: LoadOutcome
    #: CPU of the system's processes per message sent; of the stand-ins per API request served
    #: (the time spent answering the bench's control calls taken out).
    system_cpu_us: float
    standins_cpu_us: float
    standins_requests: int
    queue_max: int
    restarted: bool = False
    #: A capacity step run again after a stall.
    repeat: bool = False

    @property
    def holds(self) -> bool:
        return self.outcome.holds(self.delays.limit)

    @property
    def throughput(self) -> float:
        """Messages answered per second while the load ran (after the pipeline filled)."""
        return self.outcome.answered_per_s


@dataclass
class Search:
    capacity: float
    #: The lowest rate that failed (inf when none did).
    failed_at: float
    steps: list[Run] = field(default_factory=list)
    seconds: float = 0.0


class Sampler(threading.Thread):
    """The Dramatiq queue's length four times a second."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.key = key
        self.max = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            self.max = max(self.max, int(self.client.llen(self.key)))


class Runner:
    """Starts a system, runs loads against it and keeps it clean between runs."""

    def __init__(
        self,
        redis_url: str,
        tmp: Path,
        standins: StandIns,
        *,
        log: Callable[[str], None] = print,
    ) -> None:
        self.redis_url = redis_url
        self.client = redis.Redis.from_url(redis_url)
        self.tmp = tmp
        self.standins = standins
        self.log = log
        self.phone_base = 1_000_000
        self.procs: Processes | None = None
        self.system: System | None = None
        self.delays = Delays(0.0, 0.0)

    # ---- processes ----------------------------------------------------------------------------

    def start(self, system: System) -> None:
        self.stop()
        self.system = system
        self.procs = Processes(self.redis_url, self.tmp)
        self.client.flushall()
        for name, command in system.commands:
            self.procs.start(name, command, **self.standins.env())
        self.procs.wait_http()
        self._wait_workers()
        # First calls pay for lazy imports, clients and schemas in every process and thread:
        # a short unreported load, so no measured run starts cold.
        delays = self.delays
        self.set_delays(Delays(0.0, 0.0))
        # Until every warm-up message is answered: a cold group can take seconds.
        self.run(
            WARMUP_RATE,
            WARMUP_SECONDS,
            abort="age",
            abort_age_seconds=60,
            drain_seconds=60,
            label="(warm-up) ",
            settle=False,
        )
        self.set_delays(delays)

    def _wait_workers(self) -> None:
        """Until both Dramatiq worker processes of the system have started their threads, or
        30 s."""
        assert self.procs is not None
        assert self.system is not None
        if not self.system.queue_key:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = [
                p
                for name in self.procs.procs
                if name.startswith("worker")
                for p in self.procs.tree(name)
                if _threads(p) >= WORKER_THREADS
            ]
            if len(ready) >= 2:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        if self.procs is not None:
            self.procs.stop_all()
            self.procs = None

    def restart(self) -> None:
        assert self.system is not None
        self.log(f"    (restarting {self.system.name})")
        self.start(self.system)

    def set_delays(self, delays: Delays) -> None:
        self.standins.set_delays(delays.openai, delays.twilio)
        self.delays = delays

    def settle(self, max_seconds: float = 4.0) -> bool:
        """Waits until no request has reached the stand-ins for longer than the longest delay
        (the system is idle); False when it did not within ``max_seconds``."""
        quiet = max(self.delays.openai, self.delays.twilio) + 0.3
        deadline = time.monotonic() + max_seconds
        last, since = self.standins.requests(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.standins.requests()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
        return False

    # ---- one run ------------------------------------------------------------------------------

    def run(
        self,
        rate: float,
        seconds: float,
        *,
        abort: str,
        abort_age_seconds: float = ABORT_AGE_SECONDS,
        drain_seconds: float | None = None,
        label: str = "",
        settle: bool = True,
    ) -> Run:
        assert self.procs is not None
        assert self.system is not None
        procs, system = self.procs, self.system
        self.client.flushall()
        self.standins.reset()
        cfg = LoadConfig(
            port=procs.port,
            public_base_url=PUBLIC_URL,
            auth_token=AUTH_TOKEN,
            standins_port=self.standins.twilio_port,
            rate=rate,
            seconds=seconds,
            phone_base=self.phone_base,
            limit_seconds=self.delays.limit,
            abort=abort,
            abort_age_seconds=abort_age_seconds,
            drain_seconds=drain_seconds if drain_seconds is not None else self.delays.limit + 2,
        )
        self.phone_base += max(1, round(rate * cfg.period_seconds))
        config, out = self.tmp / "replies-config.json", self.tmp / "replies-out.json"
        config.write_text(json.dumps(asdict(cfg)))
        out.unlink(missing_ok=True)
        names = [name for name, _ in system.commands]
        cpu = sum(procs.cpu_seconds(n) for n in names)
        stats = self.standins.stats()
        sampler = Sampler(self.client, system.queue_key) if system.queue_key else None
        if sampler:
            sampler.start()
        subprocess.run(
            [sys.executable, "-m", "bench.replies", str(config), str(out)],
            check=True,
            cwd=Path(__file__).resolve().parents[1],
            timeout=seconds + 120,
        )
        if sampler:
            sampler.stopping.set()
            sampler.join()
        outcome = LoadOutcome.from_json(json.loads(out.read_text()))
        cpu = sum(procs.cpu_seconds(n) for n in names) - cpu
        after = self.standins.stats()
        served = sum(after["counts"].values()) - sum(stats["counts"].values())
        run = Run(
            system=system.name,
            delays=self.delays,
            rate=rate,
            seconds=seconds,
            outcome=outcome,
            system_cpu_us=cpu * 1e6 / max(outcome.sent, 1),
            standins_cpu_us=(
                after["cpu_seconds"]
                - stats["cpu_seconds"]
                - (after["control_cpu_seconds"] - stats["control_cpu_seconds"])
            )
            * 1e6
            / max(served, 1),
            standins_requests=served,
            queue_max=sampler.max if sampler else 0,
        )
        verdict = "holds" if run.holds else "fails"
        stopped = f", stopped at {outcome.stopped_at_s:.1f} s" if outcome.stopped_at_s else ""
        self.log(
            f"    {label}{system.name} {rate:.0f}/s x {seconds:.0f} s: p50 {outcome.p50_s:.2f} s "
            f"p99 {outcome.p99_s:.2f} s max {outcome.max_s:.2f} s, answered "
            f"{outcome.answered}/{outcome.sent}, {outcome.answered_per_s:.0f}/s{stopped}, "
            f"{outcome.late_sends} late sends (max {outcome.late_max_ms:.0f} ms): {verdict}"
        )
        if settle and outcome.missing and not self.settle():
            self.restart()
            run.restarted = True
        return run

    # ---- capacity -----------------------------------------------------------------------------

    def search(
        self,
        seen: list[Run],
        *,
        step_seconds: float,
        max_steps: int,
        resolution: float,
        start_rate: float,
    ) -> Search:
        """The highest rate that holds (see the module's docstring); ``seen`` are runs already
        made at these delays (their outcomes bracket the search, they count as no step)."""
        started = time.monotonic()
        held = [r.rate for r in seen if r.holds]
        failed = [r for r in seen if not r.holds]
        lo = max(held, default=0.0)
        hi = min((r.rate for r in failed), default=math.inf)
        # Where a failed run's throughput says the capacity is, at most.
        ceiling = min((r.throughput for r in failed if r.throughput > 0), default=math.inf)
        steps: list[Run] = []
        while len(steps) < max_steps and hi > lo * (1 + resolution):
            if not steps and ceiling < hi:
                rate = max(lo * (1 + resolution), 0.9 * ceiling)
            elif hi == math.inf:
                rate = lo * 2 if lo else start_rate
            elif lo == 0:
                rate = min(hi / 2, 0.9 * ceiling) if ceiling < hi else hi / 2
            else:
                rate = math.sqrt(lo * max(hi, lo))
                if ceiling < hi:
                    rate = min(rate, max(lo * (1 + resolution), ceiling))
            rate = round(rate, 1)
            # Enough messages for a p99 that is not just the maximum, where time allows.
            seconds = min(2 * step_seconds, max(step_seconds, STEP_MESSAGES / rate))
            run = self.run(rate, seconds, abort="p99")
            steps.append(run)
            if (
                not run.holds
                and run.outcome.backlog_growth_s <= FLAT_GROWTH_SECONDS
                and len(steps) < max_steps
            ):
                # The p99 lost while the backlog stayed flat: a stall (this machine is shared),
                # not overload. The rate gets one more try, and fails only if that fails too.
                run = self.run(rate, seconds, abort="p99", label="(again) ")
                run.repeat = True
                steps.append(run)
            if run.holds:
                lo = max(lo, rate)
            else:
                hi = min(hi, rate)
                if run.throughput > 0:
                    ceiling = min(ceiling, run.throughput)
        return Search(lo, hi, steps, time.monotonic() - started)


def _threads(p: psutil.Process) -> int:
    try:
        return int(p.num_threads())
    except psutil.Error:
        return 0
