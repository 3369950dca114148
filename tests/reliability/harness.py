"""Load, bookkeeping and measurement for the fault tests: what was acknowledged, what was
applied, and whether anything was lost, duplicated or reordered in between.

The load generator plays Twilio: one keep-alive connection per thread, every request signed with
the twilio SDK's ``RequestValidator``, each phone's messages posted one after another (a phone's
next message only once the previous one was answered 200), and a refused or unanswered request
tried again later with the same ``MessageSid`` (Twilio's retry and fallback). The ledger then
reads every session of every phone straight from Redis, so it sees the whole history whatever
the session API's page size.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from tests.e2e.conftest import AUTH_TOKEN, PUBLIC_URL, Service
from tools.demo import new_message_sid
from wa_sessions.statemachine import SessionService
from wa_sessions.statemachine.models import MessageDirection
from wa_sessions.statemachine.redis.keys import Keys, SessionField, SessionFieldPrefix

BUSINESS = "+14155238886"
KEYS = Keys()
INBOUND_COUNT = SessionFieldPrefix.BY_DIRECTION + MessageDirection.INBOUND
WEBHOOK_PATH = "/twilio-webhook-opt"


def phone(i: int) -> str:
    """Test phone numbers no log line or metric can contain by accident."""
    return f"+1415559{i:04d}"


def conv_key(customer: str, business: str = BUSINESS) -> str:
    return f"{customer}|{business}"


def deadline_poll(
    condition: Callable[[], bool], timeout_seconds: float, interval: float = 0.05
) -> float:
    """Waits for ``condition``; returns the seconds it took, fails the test at the deadline."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_seconds:
            raise AssertionError(f"condition not met within {timeout_seconds}s")
        time.sleep(interval)
    return time.monotonic() - started


# ---- posting -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class Poster:
    """One keep-alive HTTP connection posting signed webhooks (not thread-safe: one per thread)."""

    def __init__(self, service: Service, timeout_seconds: float = 15.0) -> None:
        parts = urllib.parse.urlsplit(service.base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.public_url = PUBLIC_URL
        self.validator = RequestValidator(AUTH_TOKEN)
        self.timeout_seconds = timeout_seconds
        self._conn: http.client.HTTPConnection | None = None

    def signed(self, form: Mapping[str, str], path: str = WEBHOOK_PATH) -> tuple[bytes, dict]:
        signature = self.validator.compute_signature(self.public_url + path, dict(form))
        body = urllib.parse.urlencode(form).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        return body, headers

    def post(self, form: Mapping[str, str], path: str = WEBHOOK_PATH) -> Answer:
        body, headers = self.signed(form, path)
        return self.raw("POST", path, body, headers)

    def raw(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        """One request; a connection the server closed in between is reopened once (safe for
        webhooks: a repeated ``MessageSid`` is a duplicate)."""
        for attempt in (1, 2):
            conn = self._conn or http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout_seconds
            )
            self._conn = conn
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            if resp.will_close:
                self.close()
            return Answer(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ---- load ----------------------------------------------------------------------------------


@dataclass
class PhoneStream:
    """One phone's messages: what it posted, what was answered 200, and when."""

    phone: str
    index: int
    tag: str
    next_n: int = 0
    pending: dict[str, str] | None = None
    pending_since: float = 0.0
    retry_at: float = 0.0
    accepted: list[str] = field(default_factory=list)
    first_sent: dict[str, float] = field(default_factory=dict)
    accepted_at: dict[str, float] = field(default_factory=dict)


class Load:
    """Phones posting numbered messages at a steady aggregate rate from a few threads, until
    stopped or until each phone has posted ``per_phone`` messages."""

    def __init__(
        self,
        service: Service,
        phones: list[str],
        *,
        rate_per_second: float,
        tag: str,
        threads: int = 4,
        per_phone: int | None = None,
        retry_after_seconds: float = 0.25,
    ) -> None:
        self.service = service
        self.sim = service.simulator()
        self.streams = [PhoneStream(p, i, tag) for i, p in enumerate(phones)]
        self.rate = rate_per_second
        self.threads_n = min(threads, len(phones))
        self.per_phone = per_phone
        self.retry_after = retry_after_seconds
        self.statuses: Counter[int | str] = Counter()
        self.refusals: list[Answer] = []
        #: Seconds each refused request took to be answered.
        self.refusal_seconds: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.errors: list[BaseException] = []

    # -- control --

    def start(self) -> Load:
        self.started_at = time.monotonic()
        for t in range(self.threads_n):
            mine = self.streams[t :: self.threads_n]
            thread = threading.Thread(target=self._run, args=(mine,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_seconds: float = 60.0) -> None:
        self._stop.set()
        self.join(timeout_seconds)

    def join(self, timeout_seconds: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "load threads did not stop"
        self.stopped_at = self.stopped_at or time.monotonic()
        if self.errors:
            raise self.errors[0]

    @property
    def finished(self) -> bool:
        return all(not t.is_alive() for t in self._threads)

    # -- results --

    def accepted(self) -> dict[str, list[str]]:
        with self._lock:
            return {s.phone: list(s.accepted) for s in self.streams}

    def accepted_total(self) -> int:
        with self._lock:
            return sum(len(s.accepted) for s in self.streams)

    def accepted_rate(self) -> float:
        elapsed = (self.stopped_at or time.monotonic()) - self.started_at
        return self.accepted_total() / elapsed if elapsed > 0 else 0.0

    def unacknowledged(self) -> int:
        """Messages whose last attempt was refused when the load stopped (never answered 200:
        Twilio would have used its fallback; not ours to apply)."""
        with self._lock:
            return sum(1 for s in self.streams if s.pending is not None)

    # -- the loop --

    def _form(self, stream: PhoneStream) -> dict[str, str]:
        body = f"{stream.tag}-{stream.index}-{stream.next_n}"
        stream.next_n += 1
        return self.sim.inbound_form(stream.phone, body, message_sid=new_message_sid())

    def _run(self, streams: list[PhoneStream]) -> None:
        poster = Poster(self.service)
        interval = self.threads_n / self.rate
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.per_phone is not None and all(
                    s.next_n >= self.per_phone and s.pending is None for s in streams
                ):
                    return
                for stream in streams:
                    if self._stop.is_set():
                        return
                    now = time.monotonic()
                    if stream.pending is None:
                        if self.per_phone is not None and stream.next_n >= self.per_phone:
                            continue
                        stream.pending = self._form(stream)
                        stream.first_sent[stream.pending["Body"]] = now
                    elif now < stream.retry_at:
                        continue
                    self._post(poster, stream)
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    elif delay < -1.0:
                        next_at = time.monotonic()  # behind by a second: do not burst
        except BaseException as exc:  # surfaced by join()
            self.errors.append(exc)
        finally:
            poster.close()

    def _post(self, poster: Poster, stream: PhoneStream) -> None:
        form = stream.pending
        assert form is not None
        sent = time.monotonic()
        try:
            answer = poster.post(form)
        except (OSError, http.client.HTTPException) as exc:
            status: int | str = type(exc).__name__
            answer = None
        else:
            status = answer.status
        with self._lock:
            self.statuses[status] += 1
            if answer is not None and answer.status == 200:
                stream.accepted.append(form["Body"])
                stream.accepted_at[form["Body"]] = time.monotonic()
                stream.pending = None
                return
            if answer is not None:
                self.refusals.append(answer)
                self.refusal_seconds.append(time.monotonic() - sent)
        stream.retry_at = time.monotonic() + self.retry_after


# ---- what was applied ----------------------------------------------------------------------


def applied_inbound(client: redis.Redis, customer: str) -> list[str]:
    """Every inbound message body of every session of ``customer``, oldest session first.
    Fails if a history was trimmed (the caller must set the cap above the load)."""
    conv = conv_key(customer)
    bodies: list[str] = []
    for sid in client.zrange(KEYS.conv_sessions(conv), 0, -1):
        trimmed = client.hget(KEYS.session(conv, sid), SessionField.TRIMMED)
        assert int(trimmed or 0) == 0, "history was trimmed"
        for raw in client.lrange(KEYS.session_messages(conv, sid), 0, -1):
            message = json.loads(raw)
            if message.get("direction", "inbound") == "inbound":  # stored without defaults
                bodies.append(message["content"])
    return bodies


def applied_counts(client: redis.Redis, customers: Iterable[str]) -> dict[str, int]:
    """Inbound messages applied per customer (all sessions), in two pipelined round trips."""
    customers = list(customers)
    pipe = client.pipeline(transaction=False)
    for customer in customers:
        pipe.zrange(KEYS.conv_sessions(conv_key(customer)), 0, -1)
    session_ids = pipe.execute()
    pipe = client.pipeline(transaction=False)
    for customer, sids in zip(customers, session_ids, strict=True):
        for sid in sids:
            pipe.hget(KEYS.session(conv_key(customer), sid), INBOUND_COUNT)
    counts = iter(pipe.execute())
    return {
        c: sum(int(next(counts) or 0) for _ in sids)
        for c, sids in zip(customers, session_ids, strict=True)
    }


def waiting(client: redis.Redis, customers: Iterable[str]) -> set[str]:
    """Customers with entries not yet applied or effects not yet committed, or a drain running."""
    customers = list(customers)
    pipe = client.pipeline(transaction=False)
    for customer in customers:
        conv = conv_key(customer)
        pipe.llen(KEYS.conv_inbox(conv))
        pipe.llen(KEYS.conv_effects(conv))
        pipe.exists(KEYS.conv_lease(conv))
    flags = iter(pipe.execute())
    return {c for c in customers if any([next(flags), next(flags), next(flags)])}


def wait_applied(
    client: redis.Redis, accepted: Mapping[str, list[str]], timeout_seconds: float
) -> float:
    """Waits until every phone has applied at least what was accepted and has nothing left in
    flight; returns the seconds it took."""

    def done() -> bool:
        counts = applied_counts(client, accepted)
        if any(counts[p] < len(bodies) for p, bodies in accepted.items()):
            return False
        return not waiting(client, accepted)

    return deadline_poll(done, timeout_seconds, interval=0.1)


@dataclass(frozen=True)
class Verdict:
    """The ledger: acknowledged messages against what the sessions hold."""

    accepted: int
    applied: int
    lost: int
    duplicated: int
    reordered: int
    #: Applied but never answered 200 (a request whose answer was lost); not an error.
    unacknowledged_applied: int
    examples: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.reordered == 0


def verify(client: redis.Redis, accepted: Mapping[str, list[str]]) -> Verdict:
    lost = duplicated = reordered = extra = applied_total = 0
    examples: list[str] = []
    for customer, bodies in accepted.items():
        applied = applied_inbound(client, customer)
        applied_total += len(applied)
        counts = Counter(applied)
        position = {body: i for i, body in enumerate(bodies)}
        missing = [b for b in bodies if b not in counts]
        lost += len(missing)
        dupes = sum(n - 1 for n in counts.values() if n > 1)
        duplicated += dupes
        extra += sum(1 for b in counts if b not in position)
        order = [position[b] for b in dict.fromkeys(applied) if b in position]
        out_of_order = sum(1 for a, b in itertools.pairwise(order) if b < a)
        reordered += out_of_order
        if (missing or dupes or out_of_order) and len(examples) < 5:
            examples.append(f"{customer}: missing {missing[:3]}, applied {applied[:10]}...")
    return Verdict(
        accepted=sum(len(b) for b in accepted.values()),
        applied=applied_total,
        lost=lost,
        duplicated=duplicated,
        reordered=reordered,
        unacknowledged_applied=extra,
        examples=tuple(examples),
    )


# ---- processes, metrics and logs -----------------------------------------------------------


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples named ``name`` (a counter's ``_total`` sample included) from an exposition."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), float(sample.value)))
    return found


def metric_value(text: str, name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in metric_samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def scrape(service: Service) -> str:
    resp = service.simulator().request("GET", "/metrics")
    assert resp.status == 200
    return resp.body.decode()


def log_files(service: Service) -> dict[str, str]:
    return {
        path.name: path.read_text(errors="replace") for path in sorted(service.tmp.glob("*.log"))
    }


def leaks(texts: Mapping[str, str], secrets: Iterable[str]) -> list[str]:
    """``where: secret`` for every secret found in any of the texts."""
    found = []
    for secret in set(secrets):
        for where, text in texts.items():
            if secret and secret in text:
                found.append(f"{where}: {secret[:12]}")
    return found


def address_forms(customer: str) -> list[str]:
    """How a phone number can be written: E.164, the WaId (no plus), and Twilio's address."""
    return [customer, customer.lstrip("+"), f"whatsapp:{customer}"]


# ---- the app in-process (ASGI) ---------------------------------------------------------------

#: Secrets of the in-process app (the ``web`` fixture); the e2e processes use tests/e2e's.
FUZZ_TWILIO_TOKEN = "fuzz-twilio-token"
FUZZ_ADMIN_TOKEN = "fuzz-admin-token"
FUZZ_BASE_URL = "https://hooks.example.test"


@dataclass
class Web:
    """The web app on the test run's Redis, through the ASGI test client."""

    app: FastAPI
    client: TestClient
    redis: redis.Redis
    service: SessionService


def assert_json_error(status: int, content_type: str | None, body: bytes) -> dict[str, Any]:
    """The one error shape: JSON ``{"error": {"code", "message"}}``, both non-empty strings."""
    assert content_type == "application/json", (status, body[:200])
    data = json.loads(body)
    assert set(data) == {"error"}, data
    assert set(data["error"]) == {"code", "message"}, data
    for part in ("code", "message"):
        assert isinstance(data["error"][part], str), data
        assert data["error"][part], data
    return dict(data)


# ---- figures for docs/RELIABILITY.md -------------------------------------------------------


def record(name: str, **figures: Any) -> None:
    """Prints a test's figures, and appends them to ``$WA_RELIABILITY_RESULTS`` (JSON lines)
    when set, which is where docs/RELIABILITY.md's table comes from."""
    line = json.dumps({"test": name, **figures}, default=str, sort_keys=True)
    print(f"\nRELIABILITY {line}")
    target = os.environ.get("WA_RELIABILITY_RESULTS")
    if target:
        with Path(target).open("a") as out:
            out.write(line + "\n")
