"""The ``console`` section of ``./run bench`` (issue #13): the operator console's pages over
100,000 sessions and a 5,000-message conversation, timed with a real HTTP client against the
Procfile's ``web`` process, beside the issue's 200 ms target.

Like the replies section, its block in ``docs/BENCHMARKS.md`` sits between markers with its own
date and command, so ``./run bench --only console`` replaces only that block.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import requests

from wa_sessions.console.auth import CSRF_FIELD

from . import profile
from .console_seed import BUSINESSES, Seeded, seed
from .procs import ADMIN_TOKEN, Processes
from .report import Document, Target

BEGIN = "<!-- console section: begin -->"
END = "<!-- console section: end -->"
#: Hand-written findings, kept inside the block.
FINDINGS = Path(__file__).with_name("console_findings.md")
TARGET_MS = 200.0
_ROW = re.compile(r'<tr id="row-')
_MESSAGE = re.compile(r'<li class="msg ')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("console section (issue #13)")
    group.add_argument(
        "--console-sessions", type=int, default=100_000, help="sessions seeded (default 100,000)"
    )
    group.add_argument(
        "--console-messages",
        type=int,
        default=5_000,
        help="messages of the long conversation (default 5,000)",
    )
    group.add_argument(
        "--console-requests", type=int, default=50, help="timed requests per page (default 50)"
    )
    group.add_argument(
        "--console-quick",
        action="store_true",
        help="a check of the section in well under a minute: 5,000 sessions, a 1,000-message "
        "conversation, 10 requests per page",
    )


@dataclass(frozen=True)
class Page:
    label: str
    path: str
    #: What one answer should hold: table rows or chat messages (a page that answers but shows
    #: nothing would time well and mean nothing).
    pattern: re.Pattern[str]


@dataclass
class Timing:
    page: Page
    ms: list[float]
    cpu_ms: float
    items: int
    body_bytes: int

    def q(self, fraction: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def pages(seeded: Seeded) -> list[Page]:
    deep = max(0, seeded.sessions - 50)
    long = f"/console/sessions/{seeded.long_session}"
    older = max(0, seeded.long_messages // 2)
    return [
        Page("sessions, first page", "/console/", _ROW),
        Page(f"sessions, deep page (`start={deep:,}`)", f"/console/?start={deep}", _ROW),
        Page("filtered by status (completed)", "/console/?status=completed", _ROW),
        Page(
            f"filtered by business number ({BUSINESSES[2]}, 5% of sessions)",
            "/console/?" + urlencode({"business": BUSINESSES[2]}),
            _ROW,
        ),
        Page(
            f"filtered by status and business number (active, {BUSINESSES[1]})",
            "/console/?" + urlencode({"status": "active", "business": BUSINESSES[1]}),
            _ROW,
        ),
        Page("phone search", "/console/?" + urlencode({"phone": seeded.search_phone}), _ROW),
        Page(f"conversation of {seeded.long_messages:,} messages, newest page", long, _MESSAGE),
        Page(f"the same, an older page (`before={older:,}`)", f"{long}?before={older}", _MESSAGE),
    ]


class Console:
    """A signed-in operator's browser, minus the browser: one keep-alive connection."""

    def __init__(self, procs: Processes) -> None:
        self.base = f"http://127.0.0.1:{procs.port}"
        self.http = requests.Session()

    def _over_loopback(self) -> None:
        """The cookies are ``Secure`` (production's ``PUBLIC_BASE_URL`` is https); the bench
        stands where the TLS proxy would, so it sends them over loopback http."""
        for cookie in self.http.cookies:
            cookie.secure = False

    def sign_in(self) -> None:
        form = self.http.get(self.base + "/console/sign-in", timeout=10)
        self._over_loopback()
        found = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', form.text)
        assert found, "no CSRF field on the sign-in page"
        answer = self.http.post(
            self.base + "/console/sign-in",
            data={CSRF_FIELD: found.group(1), "token": ADMIN_TOKEN},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 303, (answer.status_code, answer.text[:300])
        self._over_loopback()

    def get(self, path: str) -> requests.Response:
        answer = self.http.get(self.base + path, allow_redirects=False, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        return answer


def time_page(console: Console, procs: Processes, page: Page, n: int) -> Timing:
    for _ in range(max(3, n // 10)):
        console.get(page.path)
    cpu_before = procs.cpu_seconds("web")
    ms: list[float] = []
    last = None
    for _ in range(n):
        started = time.perf_counter()
        last = console.get(page.path)
        ms.append((time.perf_counter() - started) * 1000)
    cpu = (procs.cpu_seconds("web") - cpu_before) * 1000 / n
    assert last is not None
    items = len(page.pattern.findall(last.text))
    return Timing(page, ms, cpu, items, len(last.content))


@dataclass
class ConsoleSection:
    args: argparse.Namespace
    command: str
    seeded: Seeded | None = None
    timings: list[Timing] | None = None
    profile_lines: list[str] | None = None
    date: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    minutes: float = 0.0

    @property
    def targets(self) -> list[Target]:
        return [
            Target(
                f"console, {t.page.label}: p95 <= {TARGET_MS:.0f} ms",
                f"p50 {statistics.median(t.ms):.1f} ms, p95 {t.q(0.95):.1f} ms",
                t.q(0.95) <= TARGET_MS,
            )
            for t in self.timings or []
        ]

    def document(self) -> Document:
        doc = Document(echo=lambda _: None)
        s = self.seeded
        assert s is not None
        assert self.timings is not None
        doc(BEGIN)
        doc(
            f"## 7. Console pages over {s.sessions:,} sessions and a "
            f"{s.long_messages:,}-message conversation (issue #13)"
        )
        doc()
        la, lb = self.load_before, self.load_after
        doc(
            f"- date: {self.date:%Y-%m-%d %H:%M} UTC; command: `{self.command}`; "
            f"took {self.minutes:.1f} min"
        )
        doc(
            f"- load average when it began: {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}; when it "
            f"ended: {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}"
        )
        doc()
        doc(
            f"**Data** (seeded in {s.seconds:.0f} s, FLUSHALL first, `bench/console_seed.py`): "
            f"{s.sessions:,} sessions, one per phone, each with two customer messages taken "
            "through the webhook's ingest script and the workers' drain (two forked "
            f"processes); half of them given an order by `SessionService.update_session`, "
            f"{s.completed:,} completed and {s.expired:,} expired by `SessionService`; business "
            "numbers "
            f"{BUSINESSES[0]} (80%), {BUSINESSES[1]} (15%), {BUSINESSES[2]} (5%), interleaved "
            "in the index. The long conversation: customer messages each drained by "
            "`drain_conversation` with the worker's own dependencies (rule-based extraction, its "
            "reply recorded with a Twilio sid and an `out:` delivery hash), "
            f"{s.long_messages:,} stored messages in one session."
        )
        doc()
        doc(
            "**What is measured**: the Procfile's `web` line (one uvicorn process), signed in "
            "through `/console/sign-in` with the admin token; `requests` with one keep-alive "
            f"connection, sequential, {max(3, self.args.console_requests // 10)} warm-up "
            f"requests then {self.args.console_requests} timed per page, from the request to "
            "the last byte of the HTML. Server CPU: the web process' user + system CPU over "
            "the timed requests, divided by them (psutil, 10 ms clock ticks). Items: table rows "
            "or chat messages on the last answer."
        )
        doc()
        doc("### Targets of issue #13: each page in under 200 ms (p95)")
        doc()
        doc.table(
            ["target", "measured", "verdict"],
            [[t.name, t.measured, t.verdict] for t in self.targets],
        )
        doc.table(
            ["page", "p50 ms", "p95 ms", "max ms", "server CPU ms/request", "items", "HTML KiB"],
            [
                [
                    t.page.label,
                    f"{statistics.median(t.ms):.1f}",
                    f"{t.q(0.95):.1f}",
                    f"{max(t.ms):.1f}",
                    f"{t.cpu_ms:.1f}",
                    str(t.items),
                    f"{t.body_bytes / 1024:.0f}",
                ]
                for t in self.timings
            ],
        )
        if self.profile_lines:
            doc.lines += self.profile_lines
        if FINDINGS.exists():
            doc.lines += FINDINGS.read_text().rstrip().splitlines()
            doc()
        doc(END)
        return doc


def apply_quick(args: argparse.Namespace) -> None:
    if args.console_quick:
        args.console_sessions = min(args.console_sessions, 5_000)
        args.console_messages = min(args.console_messages, 1_000)
        args.console_requests = min(args.console_requests, 10)


def run_section(
    args: argparse.Namespace, redis_url: str, tmp: Path, command: str
) -> ConsoleSection:
    apply_quick(args)
    started = time.monotonic()
    section = ConsoleSection(args, command, load_before=os.getloadavg())
    print(f"  console: seeding {args.console_sessions:,} sessions", flush=True)
    section.seeded = seed(redis_url, args.console_sessions, args.console_messages)
    procs = Processes(redis_url, tmp)
    try:
        procs.start("web")
        procs.wait_http()
        console = Console(procs)
        console.sign_in()
        section.timings = []
        for page in pages(section.seeded):
            timing = time_page(console, procs, page, args.console_requests)
            print(
                f"    {page.label}: p50 {statistics.median(timing.ms):.1f} ms, "
                f"p95 {timing.q(0.95):.1f} ms, {timing.items} items",
                flush=True,
            )
            section.timings.append(timing)
        if args.profile:
            section.profile_lines = profile_slowest(console, procs, section.timings, tmp)
    finally:
        procs.stop_all()
    section.load_after = os.getloadavg()
    section.minutes = (time.monotonic() - started) / 60
    return section


def profile_slowest(
    console: Console, procs: Processes, timings: list[Timing], tmp: Path, seconds: float = 4
) -> list[str]:
    """py-spy on the web process while the slowest page (by p95) is read again and again."""
    slowest = max(timings, key=lambda t: t.q(0.95))
    out = tmp / "profile-console.txt"
    samplers = profile.record(procs.pids("web"), seconds, out)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        console.get(slowest.page.path)
    profile.wait(samplers)
    return profile.markdown(
        f"Profile: the web process serving the slowest page ({slowest.page.label})",
        profile.summarize(list(tmp.glob("profile-console-*.txt"))),
    )
