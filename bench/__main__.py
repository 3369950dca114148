"""Benchmarks: ``./run bench`` (or ``python -m bench``). Starts its own private Redis and the
service's real processes on loopback, runs bounded loads, prints figures and writes them to
``docs/BENCHMARKS.md``. Every rate sits beside the baseline it should be compared with,
measured in the same run, because this machine is shared and noisy.

Sections: ``webhook`` (HTTP ceiling and latency at half load), ``workers`` (applied messages/s
against Dramatiq's no-op ceiling at 1, 2 and 4 processes), ``e2e`` (lag and backlog at 50% and
80% of the webhook's maximum, cost per message), ``memory`` (Redis bytes per message and
session), the in-process ``store`` and ``drain`` figures, and ``replies`` (message-to-reply with
slow OpenAI and Twilio stand-ins, ours beside two peers: ``bench/replies_section.py``), and
``console`` (the operator console's pages over 100,000 sessions: ``bench/console_section.py``).
Run alone, ``replies`` or ``console`` (or both) replaces only its own block of
``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from . import console_section as console_mod
from . import e2e as e2e_mod
from . import inproc, profile
from . import replies_section as replies_mod
from . import webhook as webhook_bench
from . import workers as worker_bench
from .load import ensure_wrk, run_max, write_requests
from .procs import ROOT, Processes, private_redis, procfile
from .report import Document, Target, header, median, pct, splice_block, spread

SECTIONS = ("store", "drain", "webhook", "workers", "e2e", "memory", "replies", "console")
#: Sections that write a block of their own, between markers (run alone, only that block).
BLOCKS = {"replies", "console"}
FINDINGS = Path(__file__).with_name("findings.md")


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, tmp: Path, wrk: str | None) -> None:
        self.args = args
        self.url = url
        self.tmp = tmp
        self.wrk = wrk
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.targets: list[Target] = []
        self.sections: list[Document] = []
        self.profiles = Document()
        self.port = Processes(url, tmp).port
        self.requests_file = tmp / "requests.txt"
        self.requests_written = 0
        self.webhook_max: float | None = None
        self.e2e_runs: dict[str, list[e2e_mod.E2ERun]] = {}
        self.replies_block: list[str] = []
        self.replies_targets: list[Target] = []
        self.console_block: list[str] = []
        self.console_targets: list[Target] = []

    def doc(self) -> Document:
        doc = Document()
        self.sections.append(doc)
        return doc

    def processes(self) -> Processes:
        return Processes(self.url, self.tmp, port=self.port)

    def ensure_requests(self, count: int) -> None:
        """At least ``count`` distinct signed requests in the file (signed for our port)."""
        if self.requests_written >= count:
            return
        started = time.perf_counter()
        write_requests(
            self.processes().simulator(),
            self.requests_file,
            count,
            phones=2000,
            start=self.requests_written,
        )
        self.requests_written = count
        print(f"  ({count} signed requests written in {time.perf_counter() - started:.1f} s)")

    # ---- sections ----------------------------------------------------------------------------

    def store(self) -> None:
        doc = self.doc()
        doc("## In process: store calls (one Python process, no HTTP)")
        doc()
        runs = [inproc.bench_add_message(self.url, self.args.inproc) for _ in range(self.args.runs)]
        doc.table(
            ["figure", "value"],
            [
                [label, spread(r[key] for r in runs)]
                for key, label in (
                    ("add_message_per_s", "`SessionService.add_message` messages/s"),
                    ("add_message_round_trips", "round trips per `add_message`"),
                    ("apply_per_s", "`store.apply_message` messages/s"),
                    ("apply_round_trips", "round trips per apply"),
                )
            ],
        )

    def drain(self) -> None:
        doc = self.doc()
        doc("## In process: ingest and drain (one Python process, no HTTP, no Dramatiq)")
        doc()
        rows = []
        n = self.args.inproc
        for label, phones, per_phone in (
            ("20 messages per phone", max(1, n // 20), 20),
            ("1 per phone", n, 1),
        ):
            runs = [inproc.bench_drain(self.url, phones, per_phone) for _ in range(self.args.runs)]
            rows.append(
                [label]
                + [
                    spread(r[k] for r in runs)
                    for k in (
                        "ingest_per_s",
                        "ingest_round_trips",
                        "drain_per_s",
                        "drain_round_trips",
                    )
                ]
            )
        doc.table(
            ["shape", "ingest/s", "round trips/ingest", "applied/s", "round trips/applied"], rows
        )

    def webhook(self) -> None:
        assert self.wrk is not None
        args = self.args
        doc = self.doc()
        doc(
            "## 1. Webhook: `POST /twilio-webhook-opt` beside a bare ASGI endpoint "
            "(no worker running)"
        )
        doc()
        doc(
            "Both run the Procfile's `web` line (uvicorn, one process); the bare endpoint "
            "(`bench/bare.py`) reads and parses the same form and answers the same TwiML, with no "
            "signature, Redis or queue. Requests are distinct, validly signed Twilio webhooks "
            "(15 fields, 252-character body, 2,000 phones), FLUSHALL before each load."
        )
        doc()
        web, bare = self.processes(), Processes(self.url, self.tmp)
        self.ensure_requests(max(60_000, int(8_000 * args.seconds)))
        runs: dict[str, list[webhook_bench.WebhookRun]] = {"web": [], "bare": []}
        paced: dict[str, list[webhook_bench.WebhookRun]] = {"web": [], "bare": []}
        try:
            web.start("web")
            bare.start("bare", webhook_bench.bare_command(procfile("web")))
            web.wait_http()
            bare.wait_http()
            for _ in range(args.runs):
                for procs, name in ((web, "web"), (bare, "bare")):
                    runs[name].append(
                        webhook_bench.measure(
                            procs, name, self.client, self.wrk, self.requests_file, args.seconds
                        )
                    )
            self.webhook_max = median(r.load.rps for r in runs["web"])
            rate = 0.5 * self.webhook_max
            for _ in range(args.runs):
                for procs, name in ((web, "web"), (bare, "bare")):
                    paced[name].append(
                        webhook_bench.measure(
                            procs,
                            name,
                            self.client,
                            self.wrk,
                            self.requests_file,
                            args.seconds,
                            rate=rate,
                        )
                    )
            if args.profile:
                self.profile_webhook(web)
        finally:
            web.stop_all()
            bare.stop_all()

        doc(f"### Maximum: wrk closed loop, 2 threads x 64 connections, {args.seconds:.0f} s")
        doc()
        rows = []
        for name, label in (("web", "`POST /twilio-webhook-opt`"), ("bare", "bare ASGI endpoint")):
            rs = runs[name]
            rows.append(
                [
                    label,
                    spread(r.load.rps for r in rs),
                    spread(r.load.p50_ms for r in rs),
                    spread(r.load.p99_ms for r in rs),
                    spread((r.cpu_us for r in rs), "{:.0f}"),
                    str(sum(r.load.non_2xx + r.load.errors for r in rs)),
                ]
            )
        doc.table(
            ["endpoint", "requests/s", "p50 ms", "p99 ms", "server CPU us/request", "errors"],
            rows,
        )
        ratios = [
            w.load.rps / max(b.load.rps, 1.0)
            for w, b in zip(runs["web"], runs["bare"], strict=True)
        ]
        doc(f"Webhook / bare endpoint, requests/s (run by run): **{pct(ratios)}**")
        outcomes: dict[str, int] = {}
        for r in runs["web"] + paced["web"]:
            for k, v in r.outcomes.items():
                outcomes[k] = outcomes.get(k, 0) + v
        doc()
        doc(
            "Webhook outcomes over all its loads (the service's own counter): "
            + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        )
        doc()
        doc(
            f"### Latency at 50% of the webhook's maximum: {rate:.0f} requests/s, open loop, "
            f"{args.seconds:.0f} s"
        )
        doc()
        doc(
            "wrk paced by its Lua `delay()`: one connection per wrk thread, each with a fixed "
            "schedule; latency is measured from when each request was due, so a slow answer "
            "that delays the next request is charged to it (wrk2's correction). `late` counts "
            "requests sent after their due time because the previous answer had not arrived. "
            "The bare endpoint gets the same rate."
        )
        doc()
        rows = []
        for name, label in (("web", "`POST /twilio-webhook-opt`"), ("bare", "bare ASGI endpoint")):
            rs = paced[name]
            rows.append(
                [
                    label,
                    spread(r.load.rps for r in rs),
                    spread((r.load.p50_ms for r in rs), "{:.2f}"),
                    spread((r.load.p99_ms for r in rs), "{:.2f}"),
                    spread(r.load.max_ms for r in rs),
                    spread((r.cpu_us for r in rs), "{:.0f}"),
                    str(sum(r.load.late for r in rs)),
                    str(sum(r.load.non_2xx + r.load.errors for r in rs)),
                ]
            )
        doc.table(
            [
                "endpoint",
                "requests/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "server CPU us/request",
                "late",
                "errors",
            ],
            rows,
        )
        p99 = [r.load.p99_ms for r in paced["web"]]
        self.targets += [
            Target(
                "webhook requests/s >= 60% of the bare endpoint's",
                pct(ratios),
                median(ratios) >= 0.6,
            ),
            Target(
                "webhook p99 <= 15 ms at 50% of its maximum",
                spread(p99, "{:.1f} ms"),
                median(p99) <= 15,
            ),
        ]

    def measure_webhook_max(self) -> float:
        """One closed-loop run, for sections run without the webhook section."""
        assert self.wrk is not None
        self.ensure_requests(max(60_000, int(8_000 * self.args.seconds)))
        procs = self.processes()
        try:
            procs.start("web")
            procs.wait_http()
            self.client.flushall()
            result = run_max(self.wrk, procs.port, self.requests_file, self.args.seconds)
        finally:
            procs.stop_all()
        return result.rps

    def workers(self) -> None:
        args = self.args
        doc = self.doc()
        doc("## 2. Workers against Dramatiq's ceiling, and 5. scaling with processes")
        doc()
        doc(
            "Messages preloaded through the webhook's ingest script (realistic Twilio fields, "
            "252-character body); their wake-ups written in Dramatiq's layout and released all at "
            "once (one RENAME onto the queue) to the Procfile's `worker` line (8 threads per "
            "process), started beforehand and polling; timed from its first fetch until every "
            "message is applied, with its order extraction and reply (the worker's offline "
            "configuration: rule-based extractor, replies logged as no Twilio account is set). "
            "Beside it, Dramatiq's ceiling: messages for a no-op actor (`bench/noop.py`, the "
            "service's own broker setup) run by the same command line, released and timed the "
            "same way until all are acknowledged. One worker group per process count serves all "
            "its runs. Prefetch: one message per thread (`OneMessagePerThread`). "
            f"{args.messages:,} messages per run of the service, "
            f"{args.noop_messages:,} per run of the no-op actor."
        )
        doc()
        broker = worker_bench.Broker.setup(self.url)
        procs = self.processes()
        n = args.messages
        shapes = {"bursty": (max(1, n // 20), 20), "single": (n, 1)}
        results: dict[int, dict[str, list[worker_bench.WorkerRun]]] = {}
        try:
            for processes in (2, 1, 4):
                res = results.setdefault(processes, {})
                with worker_bench.WorkerGroup(procs, "noop", processes) as group:
                    res["noop"] = [
                        worker_bench.run_noop(group, broker, self.client, args.noop_messages)
                        for _ in range(args.runs)
                    ]
                with worker_bench.WorkerGroup(procs, "worker", processes) as group:
                    for _ in range(args.runs):
                        # The bursty shape at 2 processes only, to keep the run short.
                        for shape in ("bursty", "single") if processes == 2 else ("single",):
                            phones, per_phone = shapes[shape]
                            res.setdefault(shape, []).append(
                                worker_bench.run_service(
                                    group, broker, self.client, phones, per_phone
                                )
                            )
                    if args.profile and processes == 2:
                        self.profile_workers(group, broker, n)
        finally:
            procs.stop_all()
        rows = []
        for processes in (1, 2, 4):
            res = results[processes]
            noop = [r.rate for r in res["noop"]]
            row = [str(processes), spread(noop, "{:.0f}")]
            for shape in ("bursty", "single"):
                if shape in res:
                    rates = [r.rate for r in res[shape]]
                    row += [
                        spread(rates, "{:.0f}"),
                        pct(b / a for a, b in zip(noop, rates, strict=True)),
                    ]
                else:
                    row += ["-", "-"]
            rows.append(row)
        doc.table(
            [
                "processes x 8 threads",
                "no-op actor messages/s",
                "20 per phone: applied/s",
                "/ no-op",
                "1 per phone: applied/s",
                "/ no-op",
            ],
            rows,
        )
        doc("Cost per message at 2 processes (worker CPU of the process tree; Redis from `INFO`):")
        doc()
        rows = []
        res = results[2]
        for key, label in (
            ("noop", "no-op actor (per message)"),
            ("bursty", "20 per phone (per applied message)"),
            ("single", "1 per phone (per applied message)"),
        ):
            rs = res[key]
            rows.append(
                [
                    label,
                    spread((r.cpu_us for r in rs), "{:.0f}"),
                    spread((r.redis["redis_cpu_us"] for r in rs), "{:.0f}"),
                    spread((r.redis["redis_round_trips"] for r in rs), "{:.2f}"),
                    spread((r.redis["redis_scripts"] for r in rs), "{:.2f}"),
                    spread((r.redis["redis_commands"] for r in rs), "{:.1f}"),
                ]
            )
        doc.table(
            [
                "shape",
                "worker CPU us",
                "Redis CPU us",
                "Redis round trips",
                "Lua script calls",
                "Redis commands (inside scripts too)",
            ],
            rows,
        )
        noop2 = [r.rate for r in res["noop"]]
        bursty2 = [b.rate / a for a, b in zip(noop2, res["bursty"], strict=True)]
        single2 = [s.rate / a for a, s in zip(noop2, res["single"], strict=True)]
        self.targets += [
            Target(
                "workers, 20 messages per phone: >= 100% of Dramatiq's no-op messages/s",
                pct(bursty2),
                median(bursty2) >= 1.0,
            ),
            Target(
                "workers, 1 message per phone: >= 60% of Dramatiq's no-op messages/s",
                pct(single2),
                median(single2) >= 0.6,
            ),
        ]

    def e2e(self) -> None:
        assert self.wrk is not None
        args = self.args
        if self.webhook_max is None:
            self.webhook_max = self.measure_webhook_max()
        peak = self.webhook_max
        doc = self.doc()
        doc(
            "## 3. End to end: web + worker (2 processes x 8 threads) + scheduler, "
            f"{args.e2e_seconds:.0f} s of paced webhooks"
        )
        doc()
        doc(
            f"Rates are 50% and 80% of the webhook's maximum measured above ({peak:.0f} "
            "requests/s); paced as in section 1, 2,000 phones. Lag is from the webhook's "
            "acceptance (the stored message's `timestamp`) to the moment Redis published the "
            "pop of its inbox entry, which happens inside the drain's atomic apply "
            "(`bench/lagprobe.py`: a keyspace-notification subscriber in its own process that "
            "timestamps what it reads, to about a millisecond); every message of every run is "
            "counted. The "
            "service's own `wa_sessions_queue_lag_seconds` histogram is shown beside it. "
            "Backlog = messages accepted and not yet applied, exact, every 100 ms; flat when "
            f"its least-squares growth over the load is under {e2e_mod.FLAT_GROWTH_SECONDS} s "
            f"of traffic and all is applied within {e2e_mod.FLAT_TAIL_SECONDS:.0f} s of the "
            "last acceptance. When the web answers less than the offered rate (`of offered`), "
            "the machine is saturated and the backlog is capped by what got in; the target then "
            "counts as missed."
        )
        doc()
        procs = self.processes()
        rates = {"50%": 0.5 * peak, "80%": 0.8 * peak}
        self.ensure_requests(math.ceil(max(rates.values()) * args.e2e_seconds * 1.1))
        runs: dict[str, list[e2e_mod.E2ERun]] = {k: [] for k in rates}
        try:
            procs.start("worker")
            procs.start("scheduler")
            procs.start("web")
            procs.wait_http()
            for _ in range(args.runs):
                for label, rate in rates.items():
                    runs[label].append(
                        e2e_mod.run_e2e(
                            procs, self.client, self.wrk, self.requests_file, args.e2e_seconds, rate
                        )
                    )
        finally:
            procs.stop_all()
        self.e2e_runs = runs
        rows = []
        for label, rs in runs.items():
            rows.append(
                [
                    f"{label} ({rates[label]:.0f}/s)",
                    spread((r.load.rps for r in rs), "{:.0f}"),
                    pct(r.delivered for r in rs),
                    spread((r.lag_p50_ms for r in rs), "{:.1f}"),
                    spread((r.lag_p99_ms for r in rs), "{:.1f}"),
                    spread((r.lag_max_ms for r in rs), "{:.0f}"),
                    pct(r.histogram_share_100ms for r in rs),
                    str(sum(r.load.non_2xx + r.load.errors for r in rs)),
                ]
            )
        doc.table(
            [
                "load",
                "answered requests/s",
                "of offered",
                "lag p50 ms",
                "lag p99 ms",
                "lag max ms",
                "histogram: share <= 100 ms",
                "HTTP errors",
            ],
            rows,
        )
        rows = []
        for label, rs in runs.items():
            rows.append(
                [
                    label,
                    spread((r.backlog_growth_s for r in rs), "{:.3f}"),
                    spread((r.backlog_max for r in rs), "{:.0f}"),
                    spread((r.pending_max for r in rs), "{:.0f}"),
                    spread((r.queue_max for r in rs), "{:.0f}"),
                    spread((r.tail_s for r in rs), "{:.2f}"),
                    " ".join("flat" if r.flat else "GROWING" for r in rs),
                ]
            )
        doc.table(
            [
                "load",
                "backlog growth (s of traffic)",
                "backlog max (messages)",
                "`idx:pending` max (phones)",
                "Dramatiq queue max",
                "all applied (s after the last acceptance)",
                "verdict by run",
            ],
            rows,
        )
        p99 = [r.lag_p99_ms for r in runs["50%"]]
        # Flat only counts when the load was really offered: a saturated web caps the backlog.
        flat = [r.flat and r.delivered >= 0.95 for r in runs["80%"]]
        self.targets += [
            Target(
                "end-to-end p99 lag <= 100 ms at 50% of the webhook maximum",
                spread(p99, "{:.0f} ms"),
                median(p99) <= 100,
            ),
            Target(
                "backlog flat at 80% of the webhook maximum",
                f"flat with >= 95% of the rate answered in {sum(flat)} of {len(flat)} runs",
                sum(flat) * 2 > len(flat),
            ),
        ]
        self.cost(runs)

    def cost(self, runs: dict[str, list[e2e_mod.E2ERun]]) -> None:
        doc = self.doc()
        doc("## 4. Cost per message (end-to-end runs above)")
        doc()
        doc(
            "CPU: user + system time of each process tree (psutil) over the run, divided by the "
            "messages applied. Redis: deltas of `INFO` over the run, divided likewise, for all "
            "clients together (web, workers, scheduler and the bench's own samplers, which add "
            "4 commands per second). Round trips are Redis' `total_reads_processed` (socket "
            "reads that carried requests: a pipeline counts once); commands are "
            "`total_commands_processed`, which counts each command inside a Lua script too. "
            "The lag probe's own CPU is shown last."
        )
        doc()
        rows = []
        for label, rs in runs.items():
            rows.append(
                [
                    label,
                    spread((r.cpu_us["web"] for r in rs), "{:.0f}"),
                    spread((r.cpu_us["worker"] for r in rs), "{:.0f}"),
                    spread((r.cpu_us["scheduler"] for r in rs), "{:.1f}"),
                    spread((r.redis["redis_cpu_us"] for r in rs), "{:.0f}"),
                    spread((r.redis["redis_round_trips"] for r in rs), "{:.2f}"),
                    spread((r.redis["redis_scripts"] for r in rs), "{:.2f}"),
                    spread((r.redis["redis_commands"] for r in rs), "{:.1f}"),
                    spread(
                        (r.redis["redis_bytes_in"] + r.redis["redis_bytes_out"] for r in rs),
                        "{:.0f}",
                    ),
                    spread((r.probe_cpu_us for r in rs), "{:.1f}"),
                ]
            )
        doc.table(
            [
                "load",
                "web CPU us",
                "workers CPU us",
                "scheduler CPU us",
                "Redis CPU us",
                "Redis round trips",
                "Lua script calls",
                "Redis commands",
                "Redis bytes in+out",
                "lag probe CPU us",
            ],
            rows,
        )

    def memory(self) -> None:
        args = self.args
        doc = self.doc()
        sessions, per = args.memory_sessions, 20
        doc(f"## 4. Redis memory: {sessions:,} sessions of {per} messages with a 300-byte body")
        doc()
        doc(
            "Filled the way the service fills it: each message built by the webhook's own parsing "
            "of a Twilio form, accepted by the ingest script (pipelined), then applied by "
            "`handlers.drain_conversation` (from two forked processes for the large fill). "
            "`used_memory` is `INFO memory` after "
            "minus before (FLUSHALL first): everything, including each message's dedupe marker "
            "(a field of a `seen:<day>:<shard>` hash, kept 7 days) and the indexes. Per-key "
            "figures are `MEMORY USAGE ... SAMPLES 0` over 100 sessions (the dedupe hashes: all "
            "of them, divided by the messages). The first fill applies the messages "
            "only; the second, smaller one drains with the worker's own dependencies "
            f"(`bootstrap.build_worker_deps`), so each message also gets its order extraction "
            f"and reply ({args.memory_effect_sessions:,} sessions, for time; one message per "
            "phone at a time, each drained before the next, so each gets its own reply)."
        )
        doc()
        plain = [inproc.bench_memory(self.url, sessions, per) for _ in range(args.runs)]
        deps = worker_bench.worker_deps(self.url)
        full = [
            inproc.bench_memory(self.url, args.memory_effect_sessions, per, deps)
            for _ in range(args.runs)
        ]
        rows = [
            [
                "`used_memory` per inbound message",
                spread(r["used_memory_per_message"] for r in plain),
                spread(r["used_memory_per_message"] for r in full),
            ],
            [
                "stored messages per inbound message",
                spread((r["stored_per_inbound"] for r in plain), "{:.2f}"),
                spread((r["stored_per_inbound"] for r in full), "{:.2f}"),
            ],
            [
                "`used_memory` per stored message",
                spread(r["used_memory_per_stored"] for r in plain),
                spread(r["used_memory_per_stored"] for r in full),
            ],
            [
                "`used_memory` per session",
                spread(r["used_memory_per_session"] for r in plain),
                spread(r["used_memory_per_session"] for r in full),
            ],
            [
                "one inbound message's stored JSON",
                spread(r["stored_json_bytes"] for r in plain),
                spread(r["stored_json_bytes"] for r in full),
            ],
        ]
        for key in plain[0]:
            name = key.partition(":")[2]
            unit = "per session" if key.startswith("key:") else "per message"
            if key.startswith(("key:", "msgkey:")):
                rows.append(
                    [
                        f"{name} ({unit})",
                        spread(r[key] for r in plain),
                        spread(r.get(key, 0.0) for r in full),
                    ]
                )
        doc.table(
            [
                "bytes",
                f"{sessions:,} x {per}, messages only",
                f"{args.memory_effect_sessions:,} x {per}, with extraction and replies",
            ],
            rows,
        )
        per_message = [r["used_memory_per_stored"] for r in plain]
        self.targets.append(
            Target(
                "<= 600 bytes of Redis memory per stored message (300-byte body)",
                spread(per_message, "{:.0f} B"),
                median(per_message) <= 600,
            )
        )

    def replies(self, command: str) -> None:
        section = replies_mod.run_section(self.args, self.url, self.tmp, command)
        self.replies_block = section.document().lines
        self.replies_targets = section.targets

    def console(self, command: str) -> None:
        section = console_mod.run_section(self.args, self.url, self.tmp, command)
        self.console_block = section.document().lines
        self.console_targets = section.targets

    # ---- profiles ----------------------------------------------------------------------------

    def profile_webhook(self, web: Processes) -> None:
        assert self.wrk is not None
        self.client.flushall()
        out = self.tmp / "profile-web.txt"
        samplers = profile.record(web.pids("web"), self.args.seconds - 1, out)
        run_max(self.wrk, web.port, self.requests_file, self.args.seconds)
        profile.wait(samplers)
        self.profiles.lines += profile.markdown(
            "Web process, webhook at its maximum (closed loop)",
            profile.summarize(list(self.tmp.glob("profile-web-*.txt"))),
        )

    def profile_workers(
        self, group: worker_bench.WorkerGroup, broker: worker_bench.Broker, n: int
    ) -> None:
        out = self.tmp / "profile-worker.txt"
        samplers: list[subprocess.Popen[bytes]] = []

        def on_start(p: Processes) -> None:
            samplers.extend(profile.record(p.pids("worker"), 3, out))

        worker_bench.run_service(group, broker, self.client, n, 1, on_start=on_start)
        profile.wait(samplers)
        self.profiles.lines += profile.markdown(
            "Worker processes (2 x 8 threads), 1 message per phone",
            profile.summarize(list(self.tmp.glob("profile-worker-*.txt"))),
        )


def _without_note(args: list[str]) -> list[str]:
    """The command line as shown in the header; the note has a line of its own."""
    shown: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            shown.append(arg)
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument(
        "--seconds", type=float, default=4, help="length of each webhook load (default 4)"
    )
    parser.add_argument(
        "--e2e-seconds", type=float, default=30, help="length of each end-to-end load (default 30)"
    )
    parser.add_argument(
        "--messages", type=int, default=3_000, help="messages per worker run (default 3,000)"
    )
    parser.add_argument(
        "--noop-messages",
        type=int,
        default=4_000,
        help="messages per run of the no-op actor (default 4,000)",
    )
    parser.add_argument(
        "--inproc", type=int, default=2_000, help="messages per in-process run (default 2,000)"
    )
    parser.add_argument(
        "--memory-sessions", type=int, default=10_000, help="sessions of the memory fill"
    )
    parser.add_argument(
        "--memory-effect-sessions",
        type=int,
        default=50,
        help="sessions of the memory fill with order extraction and replies (default 50)",
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sample the processes with py-spy under load (default: when py-spy is installed)",
    )
    parser.add_argument("--note", default="", help="a line for the header (e.g. machine state)")
    replies_mod.add_arguments(parser)
    console_mod.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.profile is None:
        args.profile = profile.py_spy() is not None
    sections = set(args.only or SECTIONS)
    started = time.monotonic()
    wrk = ensure_wrk() if sections & {"webhook", "e2e"} else None
    with private_redis() as server, tempfile.TemporaryDirectory(prefix="wa-bench-") as tmpdir:
        redis_version = str(redis.Redis.from_url(server.url).info("server")["redis_version"])
        head = Document()
        given = shlex.join(_without_note(argv if argv is not None else sys.argv[1:]))
        head_argv = f" {given}" if given else ""
        header(
            head,
            redis_version=redis_version,
            wrk=wrk,
            runs=args.runs,
            argv=head_argv,
        )
        if args.note:
            head(f"- note: {args.note}")
        bench = Bench(args, server.url, Path(tmpdir), wrk)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("store", bench.store),
            ("drain", bench.drain),
            ("webhook", bench.webhook),
            ("workers", bench.workers),
            ("e2e", bench.e2e),
            ("memory", bench.memory),
            ("replies", lambda: bench.replies(f"./run bench{head_argv}")),
            ("console", lambda: bench.console(f"./run bench{head_argv}")),
        ]
        for name, step in steps:
            if name not in sections:
                continue
            if name in ("webhook", "e2e") and wrk is None:
                bench.doc()(f"## {name}: skipped, wrk is not installed and could not be installed")
                continue
            step_started = time.monotonic()
            step()
            print(f"  ({name}: {time.monotonic() - step_started:.0f} s)", flush=True)
    output = Path(args.output)
    if sections <= BLOCKS:
        # Alone, these sections replace their own blocks and leave the rest of the file.
        output.parent.mkdir(parents=True, exist_ok=True)
        for block, targets, (begin, end) in (
            (bench.replies_block, bench.replies_targets, (replies_mod.BEGIN, replies_mod.END)),
            (bench.console_block, bench.console_targets, (console_mod.BEGIN, console_mod.END)),
        ):
            if not block:
                continue
            output.write_text("\n".join(splice_block(output, block, begin, end)) + "\n")
            print("\n".join(block))
            for t in targets:
                print(f"{t.verdict.strip('*'):>6}  {t.name}: {t.measured}")
            print(f"{begin.split(':')[0].removeprefix('<!-- ')} block written to {output}")
        return 0
    lines = list(head.lines)
    load = os.getloadavg()
    lines += [
        f"- load average when it ended: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
        f"took {(time.monotonic() - started) / 60:.1f} min",
        "",
    ]
    if bench.targets:
        lines += ["## Targets", "", "| target | measured (min / median / max) | verdict |"]
        lines += ["| --- | --- | --- |"]
        lines += [f"| {t.name} | {t.measured} | {t.verdict} |" for t in bench.targets]
        lines.append("")
    for doc in bench.sections:
        lines += doc.lines
    if bench.replies_block:
        lines += [*bench.replies_block, ""]
    if bench.console_block:
        lines += [*bench.console_block, ""]
    if bench.profiles.lines:
        lines += [
            "## Profiles",
            "",
            "`py-spy record --gil --nonblocking -r 100` on the named processes during one extra "
            "load of each kind: where the Python code spends its CPU (threads waiting on the "
            "network or a lock are not sampled). Shares of samples; a frame's own time is the "
            "time with it innermost.",
            "",
            *bench.profiles.lines,
        ]
    if FINDINGS.exists():
        lines += ["", FINDINGS.read_text().rstrip(), ""]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines).rstrip() + "\n")
    print()
    for t in bench.targets + bench.replies_targets + bench.console_targets:
        print(f"{t.verdict.strip('*'):>6}  {t.name}: {t.measured}")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
