"""The ``replies`` section of ``./run bench`` (issue #11): message-to-reply with slow OpenAI and
Twilio stand-ins, ours beside two peers, fixed rates and a capacity search for each.

Its block in ``docs/BENCHMARKS.md`` sits between markers, with its own date, command and
targets, so ``./run bench --only replies`` replaces that block and leaves the rest of the file
(another run's sections) as it was.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .replies import FLAT_GROWTH_SECONDS, LoadOutcome
from .report import Document, Target
from .standins import StandIns
from .systems import (
    ABORT_AGE_SECONDS,
    SLACK_SECONDS,
    STEP_MESSAGES,
    SYSTEMS,
    Delays,
    Run,
    Runner,
    Search,
)

BEGIN = "<!-- replies section: begin -->"
END = "<!-- replies section: end -->"
#: Hand-written findings, kept inside the block.
FINDINGS = Path(__file__).with_name("replies_findings.md")
#: The issue's scenario: OpenAI answering in 0.8 s, Twilio in 0.2 s.
SLOW = Delays(0.8, 0.2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("replies section (issue #11)")
    group.add_argument(
        "--replies-seconds",
        type=float,
        default=30,
        help="length of each fixed-rate replies run (default 30)",
    )
    group.add_argument(
        "--replies-rates",
        default="100,300",
        help="fixed rates in messages/s, comma-separated (default 100,300)",
    )
    group.add_argument(
        "--replies-delays",
        default="0/0,0.8/0.2",
        help="stand-in delays OPENAI/TWILIO in seconds, comma-separated (default 0/0,0.8/0.2)",
    )
    group.add_argument(
        "--replies-systems",
        choices=tuple(SYSTEMS),
        action="append",
        help="systems to run (default all: ours, inline, dramatiq_lock)",
    )
    group.add_argument(
        "--replies-step-seconds",
        type=float,
        default=5,
        help="length of each capacity-search step (default 5)",
    )
    group.add_argument(
        "--replies-steps", type=int, default=5, help="most capacity-search steps (default 5)"
    )
    group.add_argument(
        "--replies-resolution",
        type=float,
        default=0.15,
        help="capacity search stops when the bracket is this close (default 0.15)",
    )
    group.add_argument(
        "--quick",
        action="store_true",
        help="a shorter replies section (about 4-5 minutes): 10 s fixed-rate runs, 3 s steps, "
        "3 steps",
    )


def apply_quick(args: argparse.Namespace) -> None:
    if args.quick:
        args.replies_seconds = min(args.replies_seconds, 10)
        args.replies_step_seconds = min(args.replies_step_seconds, 3)
        args.replies_steps = min(args.replies_steps, 3)


@dataclass
class Scenario:
    delays: Delays
    fixed: dict[float, Run | None] = field(default_factory=dict)
    search: Search | None = None


def run_section(args: argparse.Namespace, redis_url: str, tmp: Path, command: str) -> ReplySection:
    apply_quick(args)
    rates = [float(r) for r in args.replies_rates.split(",") if r.strip()]
    scenarios = [
        Delays(*(float(x) for x in d.split("/"))) for d in args.replies_delays.split(",") if d
    ]
    names = args.replies_systems or list(SYSTEMS)
    section = ReplySection(args, command, rates, scenarios, names)
    standins = StandIns(tmp).start()
    runner = Runner(redis_url, tmp, standins)
    try:
        for name in names:
            print(f"  replies: {name}", flush=True)
            runner.start(SYSTEMS[name])
            for delays in scenarios:
                runner.set_delays(delays)
                scenario = Scenario(delays)
                failed = False
                for rate in sorted(rates):
                    # A rate above one that already failed would fail too: not run.
                    run = None if failed else runner.run(rate, args.replies_seconds, abort="age")
                    scenario.fixed[rate] = run
                    failed = failed or run is None or not run.holds
                scenario.search = runner.search(
                    [r for r in scenario.fixed.values() if r is not None],
                    step_seconds=args.replies_step_seconds,
                    max_steps=args.replies_steps,
                    resolution=args.replies_resolution,
                    start_rate=rates[0] if rates else 10.0,
                )
                print(
                    f"    {name}, {delays.label}: capacity {scenario.search.capacity:.1f}/s",
                    flush=True,
                )
                section.results[name, delays] = scenario
            runner.stop()
    finally:
        runner.stop()
        standins.stop()
    section.finished()
    return section


class ReplySection:
    """The runs of the section and their write-up."""

    def __init__(
        self,
        args: argparse.Namespace,
        command: str,
        rates: list[float],
        scenarios: list[Delays],
        names: list[str],
    ) -> None:
        self.args = args
        self.command = command
        self.rates = rates
        self.scenarios = scenarios
        self.names = names
        self.results: dict[tuple[str, Delays], Scenario] = {}
        self.started = time.monotonic()
        self.date = datetime.now(UTC)
        self.load_before = os.getloadavg()
        self.load_after = self.load_before
        self.minutes = 0.0
        self.targets: list[Target] = []

    def finished(self) -> None:
        self.load_after = os.getloadavg()
        self.minutes = (time.monotonic() - self.started) / 60
        self.targets = self._targets()

    def runs(self) -> list[Run]:
        out: list[Run] = []
        for scenario in self.results.values():
            out += [r for r in scenario.fixed.values() if r is not None]
            if scenario.search:
                out += scenario.search.steps
        return out

    # ---- targets ------------------------------------------------------------------------------

    def _targets(self) -> list[Target]:
        ours = {d: s for (name, d), s in self.results.items() if name == "ours"}
        slow = ours.get(SLOW)
        instant = ours.get(Delays(0.0, 0.0))
        targets: list[Target] = []
        secs = self.args.replies_seconds
        for rate, p99_limit in ((300.0, 1.25), (100.0, 1.1)):
            name = (
                f"ours, OpenAI 0.8 s + Twilio 0.2 s, {rate:.0f} msg/s for 30 s: every message "
                f"answered, backlog flat, p99 <= {p99_limit} s, p50 <= 0.9 s"
            )
            if slow is None or rate not in slow.fixed:
                targets.append(Target(name, "not measured in this run (rate not asked for)", False))
                continue
            run = slow.fixed[rate]
            if run is None:
                targets.append(Target(name, "not run (a lower rate already failed)", False))
                continue
            o = run.outcome
            met = (
                o.missing == 0
                and o.sent == o.planned
                and o.flat
                and o.p99_s <= p99_limit
                and o.p50_s <= 0.9
                and secs >= 30
            )
            targets.append(Target(name, _summary(run), met))
        if slow and instant and slow.search and instant.search:
            a, b = slow.search.capacity, instant.search.capacity
            ratio = a / b if b else 0.0
            targets.append(
                Target(
                    "ours: capacity with OpenAI 0.8 s + Twilio 0.2 s >= 70% of the capacity with "
                    "instant stand-ins (same run)",
                    f"{a:g} / {b:g} msg/s = {ratio:.0%}",
                    ratio >= 0.7,
                )
            )
        return targets

    # ---- the write-up -------------------------------------------------------------------------

    def document(self) -> Document:
        doc = Document(echo=lambda _: None)
        args = self.args
        doc(BEGIN)
        doc(
            "## 6. Replies with slow OpenAI and Twilio: message-to-reply, ours beside two peers "
            "(issue #11)"
        )
        doc()
        la, lb = self.load_before, self.load_after
        doc(
            f"- date: {self.date:%Y-%m-%d %H:%M} UTC; command: `{self.command}`; one run of "
            f"each figure; took {self.minutes:.1f} min"
        )
        doc(
            f"- load average when it began: {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}; when it "
            f"ended: {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}"
        )
        doc()
        doc(
            "**What is measured.** Message-to-reply: from the moment the load generator wrote a "
            "signed webhook to the moment the reply's `Messages.json` create reached the Twilio "
            "stand-in (what the customer feels, both `time.time()` on this machine). Stand-ins "
            "(`bench/standins.py`, one uvloop process, two ports): OpenAI's `POST /v1/responses` "
            'answers a structured output adding 5 x "Product A" (validated by the service into '
            "its `ExtractionResult`, as `responses.parse` would), Twilio's create answers a "
            "`queued` message with a fresh sid; each after its fixed delay, without blocking "
            "other requests. Load (`bench/replies.py`, one uvloop process): open loop, each "
            "phone posting once every 3 s (rate x 3 phones), unique MessageSids, requests signed "
            'beforehand; the k-th reply to a phone reads "5k x Product A", so a reply answers '
            "every message of its phone up to the k-th (a reply covering a batch answers each "
            "message in it). Missing: messages no reply covered by the end of the drain-out "
            f"wait (the p99 limit plus 2 s after the last send); in percentiles a missing "
            "message counts with its age at the end, shown `>=`. Backlog: messages sent and not "
            "yet answered, every 250 ms; flat when its least-squares growth after the first "
            f"limit's worth of the run is under {FLAT_GROWTH_SECONDS} s of traffic. FLUSHALL "
            "and fresh phones before every run; each system warmed up (2 s at 40 msg/s, not "
            "reported, until all answered) after every start."
        )
        doc()
        doc("**The systems**, each on the same private Redis and the same stand-ins:")
        doc()
        doc(
            "- ours: the Procfile's `web`, `worker` (`WORKER_PROCESSES=2`, `WORKER_THREADS=8`) "
            "and `scheduler` lines, with `OPENAI_API_KEY`, `OPENAI_BASE_URL`, "
            "`TWILIO_ACCOUNT_SID` and `TWILIO_API_BASE_URL` pointing at the stand-ins."
        )
        doc(
            "- peer 1, `inline` (`bench/peers/inline.py`): the design document's webhook doing "
            "everything inside the request: signature, `SessionService.add_message`, OpenAI "
            "extraction with the session's history, `update_session` with the merged order, the "
            "reply through the twilio SDK, `add_message` of the reply, then TwiML. A plain "
            "`def` route (FastAPI runs it in its thread pool, 40 threads), one uvicorn process "
            "as the Procfile's `web` line."
        )
        doc(
            "- peer 2, `dramatiq_lock` (`bench/peers/dramatiq_lock.py`): the webhook checks the "
            "signature and enqueues one Dramatiq message per inbound message; the actor takes a "
            "per-phone lock (`SET NX PX` with its own token, compare-and-delete release; a busy "
            "phone is retried after 100 ms with `dramatiq.Retry`) and runs the same flow as peer "
            "1. `dramatiq` CLI with 2 processes x 8 threads and ours' broker tuning (50 ms idle "
            "poll, one message per thread), so only the design differs."
        )
        doc(
            "- Both peers extract and reply with the service's own `OpenAIOrderExtractor` and "
            "`TwilioSender` (same SDK calls, timeouts and retries) and its merge and reply "
            "templates."
        )
        doc()
        doc(
            f"**Fixed rates**: {', '.join(f'{r:g}' for r in self.rates)} messages/s for "
            f"{args.replies_seconds:g} s each; a run stops early once a message has waited "
            f"{ABORT_AGE_SECONDS:g} s unanswered (`stopped`), and a rate above one that failed "
            "is not run. **Capacity**: "
            "the highest rate at which a "
            f"{args.replies_step_seconds:g} s run (longer at low rates: {STEP_MESSAGES} messages, "
            f"up to {2 * args.replies_step_seconds:g} s) answers every message with p99 within the "
            f"latency floor (OpenAI's delay + Twilio's) plus {SLACK_SECONDS * 1000:.0f} ms and a "
            "flat backlog (a rate it sustains); a step that lost its p99 with a flat backlog (a "
            "stall of this shared machine, not overload) is run once more (`again`); the "
            "search starts below the throughput a failed fixed-rate run reached (or above one "
            f"that held), then brackets and bisects, at most {args.replies_steps} steps, until "
            f"the bracket is within {args.replies_resolution:.0%}; a step stops as soon as more "
            "than 1% of its messages are already later than the limit."
        )
        doc()
        if self.targets:
            doc("### Targets of issue #11")
            doc()
            doc.table(
                ["target", "measured", "verdict"],
                [[t.name, t.measured, t.verdict] for t in self.targets],
            )
        for delays in self.scenarios:
            self._scenario(doc, delays)
        self._costs(doc)
        if FINDINGS.exists():
            doc.lines += FINDINGS.read_text().rstrip().splitlines()
            doc()
        doc(END)
        return doc

    def _scenario(self, doc: Document, delays: Delays) -> None:
        doc(f"### {delays.label}: floor {delays.floor:g} s, p99 limit {delays.limit:g} s")
        doc()
        rows = []
        for name in self.names:
            scenario = self.results.get((name, delays))
            if scenario is None:
                continue
            for rate, run in scenario.fixed.items():
                if run is None:
                    rows.append([name, f"{rate:g}", "not run: a lower rate failed"] + [""] * 8)
                    continue
                rows.append(_row(name, run))
        doc.table(
            [
                "system",
                "offered msg/s",
                "p50 s",
                "p99 s",
                "max s",
                "answered / sent",
                "answered/s",
                "backlog: max, growth (s of traffic)",
                "Dramatiq queue max",
                "webhook p99 ms, non-200",
                "system CPU us/msg",
            ],
            rows,
        )
        rows = []
        for name in self.names:
            scenario = self.results.get((name, delays))
            if scenario is None or scenario.search is None:
                continue
            s = scenario.search
            steps = ", ".join(
                f"{r.rate:g}{' again' if r.repeat else ''} {'ok' if r.holds else 'fail'} "
                f"(p99 {_p(r.outcome, 'p99')})"
                for r in s.steps
            )
            rows.append(
                [
                    name,
                    f"**{s.capacity:g}**",
                    "-" if math.isinf(s.failed_at) else f"{s.failed_at:g}",
                    steps or "(bracketed by the fixed rates)",
                    f"{s.seconds:.0f}",
                ]
            )
        doc(
            "Capacity (messages/s, the highest rate that held: every message answered, p99 "
            "within the limit, backlog flat):"
        )
        doc()
        doc.table(
            ["system", "capacity", "lowest rate that failed", "steps (rate, verdict)", "search s"],
            rows,
        )

    def _costs(self, doc: Document) -> None:
        runs = self.runs()
        if not runs:
            return
        served = sum(r.standins_requests for r in runs)
        cpu_us = sum(r.standins_cpu_us * r.standins_requests for r in runs)
        busiest = max(
            runs,
            key=lambda r: r.standins_requests / max(r.outcome.ended_at - r.outcome.started_at, 1),
        )
        load_cpu = sum(r.outcome.load_cpu_seconds for r in runs)
        sent = sum(r.outcome.sent for r in runs)
        doc("### Cost of the measuring side")
        doc()
        doc(
            f"- stand-ins: {cpu_us / max(served, 1):.0f} us of CPU per API request over all runs "
            f"({served:,} requests; the time answering the bench's control calls taken out, "
            "timers, accepts and idle wake-ups left in); "
            f"{busiest.standins_cpu_us:.0f} us in the busiest run ({busiest.system}, "
            f"{busiest.rate:g} msg/s, {busiest.standins_requests:,} requests)"
        )
        doc(
            f"- load generator: {load_cpu * 1e6 / max(sent, 1):.0f} us of CPU per message "
            f"({sent:,} messages; signing beforehand not counted, polling the Twilio stand-in's "
            f"records 4 times a second counted); late sends (over 5 ms behind schedule) in all "
            f"runs: {sum(r.outcome.late_sends for r in runs)} of {sent:,}, at most "
            f"{max(r.outcome.late_max_ms for r in runs):.0f} ms (message-to-reply counts from "
            "the actual send)"
        )
        doc()


def _p(o: LoadOutcome, which: str) -> str:
    value = getattr(o, f"{which}_s")
    censored = getattr(o, f"{which}_censored")
    return f"{'>=' if censored else ''}{value:.2f}"


def _summary(run: Run) -> str:
    o = run.outcome
    stopped = f", stopped at {o.stopped_at_s:.0f} s" if o.stopped_at_s is not None else ""
    return (
        f"{run.rate:g} msg/s x {run.seconds:g} s: p50 {_p(o, 'p50')} s, p99 {_p(o, 'p99')} s, "
        f"answered {o.answered}/{o.sent}, backlog {'flat' if o.flat else 'growing'}{stopped}"
    )


def _row(name: str, run: Run) -> list[str]:
    o = run.outcome
    stopped = f", stopped at {o.stopped_at_s:.0f} s" if o.stopped_at_s is not None else ""
    non_200 = sum(v for k, v in o.http.items() if k != "200")
    return [
        name,
        f"{run.rate:g} x {run.seconds:g} s",
        _p(o, "p50"),
        _p(o, "p99"),
        _p(o, "max"),
        f"{o.answered:,} / {o.sent:,}{stopped}",
        f"{o.answered_per_s:.0f}",
        f"{o.backlog_max:,}, {o.backlog_growth_s:.2f} ({'flat' if o.flat else 'GROWING'})",
        str(run.queue_max) if SYSTEMS[name].queue_key else "-",
        f"{o.http_p99_ms:.0f}, {non_200}",
        f"{run.system_cpu_us:.0f}",
    ]
