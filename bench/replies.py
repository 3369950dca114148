"""Message-to-reply under an open-loop webhook load: what a customer feels, measured where Twilio
would receive the reply (the Twilio stand-in, ``bench.standins``).

The load: ``rate`` signed Twilio webhooks a second for ``seconds``, each phone posting once every
``period_seconds`` (so ``rate * period`` distinct phones, each message its own MessageSid), on a
fixed schedule that does not wait for answers (open loop: a slow server does not slow the
offered rate). Requests are built and signed before the schedule starts (the twilio SDK's
``RequestValidator``, for the service's ``PUBLIC_BASE_URL`` and auth token) and written as raw
HTTP/1.1 on keep-alive connections from one uvloop process, a new connection opened whenever
none is free (so a server that holds requests, like an inline webhook, gets as many concurrent
requests as it holds); Twilio's 15 s webhook timeout closes a request still unanswered.

Matching replies to messages: the OpenAI stand-in adds 5 x "Product A" for every message, so a
reply to a phone reading "5k x Product A" answers that phone's messages up to its k-th (one
reply may answer several, as the service's drain answers a batch at once). Message k's
message-to-reply is the arrival of the first reply covering it minus the time its webhook was
written. A message no reply covers by the end of the drain-out wait is missing; in percentiles
it counts with its age at the end (a lower bound, shown with ``>=``).

Backlog: messages sent and not yet answered, every 250 ms. Flat when its least-squares growth
over the load (after the first ``limit`` seconds, while the pipeline fills) is under
``FLAT_GROWTH_SECONDS`` of the offered traffic.

Stopping early: a capacity step stops as soon as more than 1% of its planned messages are
already later than the p99 limit (its p99 can no longer be within it); a fixed-rate run when
a message has waited ``abort_age_seconds`` unanswered (the service has fallen behind beyond
doubt). Either is reported as stopped, with the time.

Run: ``python -m bench.replies CONFIG.json OUT.json`` (the bench does; see ``LoadConfig``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httptools
import uvloop

from tools.demo import TwilioSimulator

from .load import BODY, WEBHOOK_PATH, percentile, phone, slope
from .standins import ACCOUNT_SID, ITEM, QUANTITY

FLAT_GROWTH_SECONDS = 0.25
#: ``nice`` increment of the generator and the stand-ins (negative: ahead of the service).
PRIORITY = -10
SAMPLE_SECONDS = 0.25
_TICK = 0.001
_COVERED = re.compile(rf"(\d+) x {re.escape(ITEM)}")


@dataclass
class LoadConfig:
    port: int
    public_base_url: str
    auth_token: str
    standins_port: int
    rate: float
    seconds: float
    #: First phone number (``bench.load.phone``) of this run: every run has phones of its own.
    phone_base: int
    #: The p99 limit: the latency floor plus 250 ms.
    limit_seconds: float
    #: "p99": stop once the p99 limit is lost; "age": once a message waited abort_age_seconds.
    abort: str = "age"
    abort_age_seconds: float = 5.0
    #: After the last send, wait at most this long for the last replies.
    drain_seconds: float = 5.0
    period_seconds: float = 3.0
    http_timeout_seconds: float = 15.0


@dataclass
class LoadOutcome:
    rate: float
    planned: int
    sent: int
    answered: int
    missing: int
    replies: int
    #: Replies to our phones without the expected "N x Product A" (e.g. an extraction failure).
    other_replies: int
    p50_s: float
    p99_s: float
    max_s: float
    #: The percentile is a missing message's age at the end: the real value is at least this.
    p50_censored: bool
    p99_censored: bool
    max_censored: bool
    #: Webhook answers by HTTP status; "timeout" (15 s) and "error" (connection lost) too.
    http: dict[str, int]
    http_p50_ms: float
    http_p99_ms: float
    #: Sends more than 5 ms behind their schedule (this process could not keep up).
    late_sends: int
    late_max_ms: float
    backlog_max: int
    #: Least-squares growth of the backlog over the load, in seconds of offered traffic.
    backlog_growth_s: float
    stopped_at_s: float | None
    stop_reason: str
    sent_seconds: float
    started_at: float
    ended_at: float
    load_cpu_seconds: float
    connections: int
    #: Messages answered per second while the load ran (after the first limit's worth).
    answered_per_s: float = 0.0
    backlog: list[tuple[float, int]] = field(default_factory=list)

    @property
    def flat(self) -> bool:
        return self.backlog_growth_s <= FLAT_GROWTH_SECONDS and self.stopped_at_s is None

    def holds(self, limit_seconds: float) -> bool:
        """Every message answered, the p99 within the limit and the backlog flat (a rate the
        system sustains, not one a short run ends before the queue shows)."""
        return (
            self.flat
            and self.missing == 0
            and self.sent == self.planned
            and self.p99_s <= limit_seconds
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadOutcome:
        data = dict(data)
        data["backlog"] = [tuple(x) for x in data.get("backlog", [])]
        return cls(**data)


# ---- the generator (runs in its own process) --------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection to the webhook, one request at a time."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.index: int | None = None
        self.sent_at = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gen.lost(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        keep_alive = bool(self.parser.should_keep_alive())
        self.gen.answered_http(self, str(self.parser.get_status_code()))
        if not keep_alive:
            self.transport.close()
        else:
            self.gen.idle.append(self)

    def send(self, index: int, data: bytes) -> None:
        self.index = index
        self.sent_at = time.time()
        self.transport.write(data)


class _Generator:
    def __init__(self, cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.planned = max(1, round(cfg.rate * cfg.seconds))
        self.phones = max(1, min(self.planned, round(cfg.rate * cfg.period_seconds)))
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()
        self.opening = 0
        self.opening_tasks: set[asyncio.Future[None]] = set()
        self.connections = 0
        self.send_times: list[float] = [0.0] * self.planned
        self.reply_times: list[float | None] = [None] * self.planned
        self.sent = 0
        self.answered = 0
        self.late_answered = 0
        #: The first message of the schedule not answered yet.
        self.oldest = 0
        self.http: Counter[str] = Counter()
        self.http_ms: list[float] = []
        self.late = 0
        self.late_max = 0.0
        self.replies = 0
        self.other = 0
        self.upto = [0] * self.phones
        self.phone_index = {phone(cfg.phone_base + k): k for k in range(self.phones)}
        self.samples: list[tuple[float, int]] = []
        self.stopped_at: float | None = None
        self.stop_reason = ""
        self.requests = self._requests()

    def _requests(self) -> list[bytes]:
        cfg = self.cfg
        sim = TwilioSimulator(
            f"http://127.0.0.1:{cfg.port}",
            cfg.auth_token,
            public_base_url=cfg.public_base_url,
            account_sid=ACCOUNT_SID,
        )
        head = (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{cfg.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
        ).encode()
        out = []
        for i in range(self.planned):
            form = sim.inbound_form(phone(cfg.phone_base + i % self.phones), BODY)
            body, headers = sim.signed_request(form)
            out.append(
                head
                + f"X-Twilio-Signature: {headers['X-Twilio-Signature']}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        return out

    # connections
    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Conn(self), "127.0.0.1", self.cfg.port)
        self.connections += 1
        return conn

    async def _send_on_new(self, index: int) -> None:
        self.opening += 1
        try:
            conn = await self._open()
        except OSError:
            self.http["error"] += 1
            return
        finally:
            self.opening -= 1
        self._send(conn, index)

    def _send(self, conn: _Conn, index: int) -> None:
        self.busy.add(conn)
        conn.send(index, self.requests[index])
        self.send_times[index] = conn.sent_at
        self.sent += 1

    def answered_http(self, conn: _Conn, status: str) -> None:
        self.http[status] += 1
        self.http_ms.append((time.time() - conn.sent_at) * 1000)
        conn.index = None
        self.busy.discard(conn)

    def lost(self, conn: _Conn) -> None:
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.index is not None:
            self.http["error"] += 1
            conn.index = None

    # the schedule
    async def _sender(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.cfg.rate
        i = 0
        while i < self.planned and self.stopped_at is None:
            due = start + i * interval
            wait = due - loop.time()
            # uvloop's timers and clock have millisecond resolution: a shorter sleep would spin.
            if wait >= _TICK:
                await asyncio.sleep(wait)
                continue
            # Everything due within the tick goes out before the next sleep (at most 1 ms early:
            # message-to-reply counts from the actual send).
            while i < self.planned and start + i * interval < loop.time() + _TICK:
                behind = loop.time() - (start + i * interval)
                if behind > 0.005:
                    self.late += 1
                    self.late_max = max(self.late_max, behind)
                if self.idle:
                    self._send(self.idle.pop(), i)
                else:
                    task = asyncio.ensure_future(self._send_on_new(i))
                    self.opening_tasks.add(task)
                    task.add_done_callback(self.opening_tasks.discard)
                i += 1

    # replies, read from the Twilio stand-in
    async def _records(self, since: int) -> tuple[int, list[list[Any]]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.cfg.standins_port)
        try:
            request = f"GET /_records?since={since} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            writer.write(request.encode() + b"\r\n")
            raw = await reader.read()
        finally:
            writer.close()
        data = json.loads(raw.partition(b"\r\n\r\n")[2])
        return int(data["next"]), list(data["records"])

    def _take(self, records: list[list[Any]]) -> None:
        phones = self.phones
        for at, to, body in records:
            k = self.phone_index.get(to)
            if k is None:
                continue
            self.replies += 1
            found = _COVERED.search(body)
            if not found:
                self.other += 1
                continue
            covered = int(found.group(1)) // QUANTITY
            for j in range(self.upto[k] + 1, covered + 1):
                index = k + (j - 1) * phones
                if index < self.planned and self.reply_times[index] is None:
                    self.reply_times[index] = float(at)
                    self.answered += 1
                    if float(at) - self.send_times[index] > self.cfg.limit_seconds:
                        self.late_answered += 1
            self.upto[k] = max(self.upto[k], covered)

    def _advance_oldest(self) -> None:
        """Moves ``oldest`` past the answered messages at the head of the schedule."""
        while self.oldest < self.planned and self.reply_times[self.oldest] is not None:
            self.oldest += 1

    def _late_now(self, now: float) -> int:
        """Messages already later than the limit, answered or not."""
        self._advance_oldest()
        count = self.late_answered
        for i in range(self.oldest, self.planned):
            sent = self.send_times[i]
            if not sent or now - sent <= self.cfg.limit_seconds:
                break
            if self.reply_times[i] is None:
                count += 1
        return count

    def _oldest_unanswered(self, now: float) -> float:
        self._advance_oldest()
        if self.oldest < self.planned and self.send_times[self.oldest]:
            return now - self.send_times[self.oldest]
        return 0.0

    def _expire_http(self, now: float) -> None:
        for conn in list(self.busy):
            if conn.index is not None and now - conn.sent_at > self.cfg.http_timeout_seconds:
                self.http["timeout"] += 1
                conn.index = None
                self.busy.discard(conn)
                if conn.transport is not None:
                    conn.transport.close()

    async def run(self) -> LoadOutcome:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        for _ in range(min(16, self.phones)):
            self.idle.append(await self._open())
        cursor, _ = await self._records(0)  # records of earlier runs are not ours
        cpu = time.process_time()
        lead = 0.2
        start = loop.time() + lead
        started_at = time.time() + lead
        end = started_at + self.planned / cfg.rate
        sender = asyncio.ensure_future(self._sender(start))
        allowed_late = self.planned - math.ceil(0.99 * self.planned)
        deadline: float | None = None
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            cursor, records = await self._records(cursor)
            self._take(records)
            now = time.time()
            self._expire_http(now)
            if now <= end + SAMPLE_SECONDS:
                self.samples.append((now - started_at, self.sent - self.answered))
            if self.stopped_at is None:
                if cfg.abort == "p99" and self._late_now(now) > allowed_late:
                    self.stopped_at, self.stop_reason = now - started_at, "p99 limit lost"
                elif cfg.abort == "age" and self._oldest_unanswered(now) > cfg.abort_age_seconds:
                    self.stopped_at = now - started_at
                    self.stop_reason = f"a message waited {cfg.abort_age_seconds:.0f} s"
            if self.stopped_at is not None:
                break
            if sender.done():
                if deadline is None:
                    deadline = now + cfg.drain_seconds
                if self.answered >= self.sent or now >= deadline:
                    break
        await sender
        ended_at = time.time()
        cpu = time.process_time() - cpu
        for conn in [*self.idle, *self.busy]:
            if conn.transport is not None:
                conn.transport.close()
        return self._outcome(started_at, ended_at, cpu)

    def _outcome(self, started_at: float, ended_at: float, cpu: float) -> LoadOutcome:
        lat: list[tuple[float, bool]] = []
        last_send = 0.0
        for i in range(self.sent):
            sent = self.send_times[i]
            if not sent:
                continue
            last_send = max(last_send, sent)
            reply = self.reply_times[i]
            lat.append((reply - sent, False) if reply is not None else (ended_at - sent, True))
        lat.sort()

        def pick(pct: float) -> tuple[float, bool]:
            if not lat:
                return 0.0, False
            return lat[max(1, math.ceil(pct / 100 * len(lat))) - 1]

        p50, p99, top = pick(50), pick(99), lat[-1] if lat else (0.0, False)
        http_ms = sorted(self.http_ms)
        # Growth after the pipeline filled (the first limit's worth of the run).
        warm = [(t, b) for t, b in self.samples if t >= self.cfg.limit_seconds]
        duration = (warm[-1][0] - warm[0][0]) if len(warm) > 1 else 0.0
        growth = slope(warm) * duration / self.cfg.rate if duration else 0.0
        t0 = started_at + self.cfg.limit_seconds
        t1 = (started_at + self.stopped_at) if self.stopped_at is not None else last_send
        in_window = sum(1 for r in self.reply_times if r is not None and t0 <= r <= t1)
        answered_per_s = in_window / (t1 - t0) if t1 - t0 >= 1.0 else 0.0
        return LoadOutcome(
            rate=self.cfg.rate,
            planned=self.planned,
            sent=self.sent,
            answered=self.answered,
            missing=self.sent - self.answered,
            replies=self.replies,
            other_replies=self.other,
            p50_s=p50[0],
            p99_s=p99[0],
            max_s=top[0],
            p50_censored=p50[1],
            p99_censored=p99[1],
            max_censored=top[1],
            http=dict(self.http),
            http_p50_ms=percentile(http_ms, 50),
            http_p99_ms=percentile(http_ms, 99),
            late_sends=self.late,
            late_max_ms=self.late_max * 1000,
            backlog_max=max((b for _, b in self.samples), default=0),
            backlog_growth_s=growth,
            stopped_at_s=self.stopped_at,
            stop_reason=self.stop_reason,
            sent_seconds=max(0.0, last_send - started_at),
            started_at=started_at,
            ended_at=ended_at,
            load_cpu_seconds=cpu,
            connections=self.connections,
            answered_per_s=answered_per_s,
            backlog=[(round(t, 2), b) for t, b in self.samples],
        )


def raise_priority() -> None:
    """The load generator and the stand-ins play Twilio and OpenAI, which do not share the
    service's CPUs: ahead of the system under test in the scheduler's queue (when allowed), so a
    saturated service does not delay their clocks and sends."""
    with contextlib.suppress(OSError):
        os.nice(PRIORITY)


def main(argv: list[str]) -> int:
    cfg = LoadConfig(**json.loads(Path(argv[0]).read_text()))
    raise_priority()
    generator = _Generator(cfg)
    outcome = uvloop.run(generator.run())
    Path(argv[1]).write_text(json.dumps(asdict(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
