"""Slow clients against the Procfile's web process: a thousand connections that send half their
headers, or a signed webhook's body at one byte a second, do not keep Twilio's webhooks from
being answered, and the server closes every one of them at its request deadline.

The web process is started with a soft limit of 512 open files (below the thousand sockets), as
a host's default of 1,024 would be for a few thousand: the process raises it to its hard limit
at start, or it could not even accept the connections.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import selectors
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Service
from tests.reliability.harness import WEBHOOK_PATH, Poster, phone, record, scrape

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUEST_TIMEOUT_SECONDS = 3.0
#: How late after its deadline a slow socket may be closed (a loaded two-core machine).
SLACK_SECONDS = 5.0
HALF_HEADERS = 500
DRIBBLED = 500
#: The web process' soft limit on open files when it starts: below the sockets opened here.
STARTING_SOFT_LIMIT = 512


@contextlib.contextmanager
def soft_open_files_limit(limit: int) -> Iterator[None]:
    """This process' soft limit on open files set to ``limit`` (within the hard limit), for
    the child processes started meanwhile and for the sockets opened meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@dataclass
class SlowSocket:
    kind: str
    sock: socket.socket
    opened: float
    pending: bytes = b""
    received: bytes = b""
    closed: float | None = None
    sent: int = field(default=0)


def uvicorn_process(service: Service) -> psutil.Process:
    """The Python process serving (not the ``/bin/sh -c`` that started it)."""
    root = psutil.Process(service.processes["web"].pid)
    for proc in [root, *root.children(recursive=True)]:
        if any(Path(part).name == "uvicorn" for part in proc.cmdline()):
            return proc
    raise AssertionError("no uvicorn process under the web command")


def open_slow_sockets(service: Service, poster: Poster) -> list[SlowSocket]:
    """Half of them send a request line and part of a header; the other half a signed
    webhook's headers, their body to follow a byte a second."""
    host = f"127.0.0.1:{service.port}"
    sockets = []
    for i in range(HALF_HEADERS + DRIBBLED):
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
        opened = time.monotonic()
        if i % 2 == 0:
            sock.sendall(f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}\r\nX-Twilio-Sig".encode())
            sockets.append(SlowSocket("headers", sock, opened))
            continue
        form = service.simulator().inbound_form(phone(9000 + i), f"slow body {i}")
        body, headers = poster.signed(form)
        head = f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode())
        sockets.append(SlowSocket("body", sock, opened, pending=body))
    return sockets


def wait_until_closed(sockets: list[SlowSocket], until: float) -> None:
    """Reads every socket until the server closes it (or ``until``), sending the next byte of
    each pending body once a second meanwhile."""
    selector = selectors.DefaultSelector()
    for slow in sockets:
        slow.sock.setblocking(False)
        selector.register(slow.sock, selectors.EVENT_READ, slow)
    next_drip = time.monotonic()
    while selector.get_map() and time.monotonic() < until:
        now = time.monotonic()
        if now >= next_drip:
            next_drip = now + 1.0
            for slow in sockets:
                if slow.closed is None and slow.sent < len(slow.pending):
                    with contextlib.suppress(OSError):
                        slow.sock.send(slow.pending[slow.sent : slow.sent + 1])
                        slow.sent += 1
        for key, _ in selector.select(timeout=0.1):
            slow = key.data
            try:
                chunk = slow.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                slow.received += chunk
                continue
            slow.closed = time.monotonic()
            selector.unregister(slow.sock)
    selector.close()


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def timeouts_by_phase(service: Service) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(scrape(service)):
        if family.name == "wa_sessions_request_timeouts":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["phase"]] = sample.value
    return found


@pytest.fixture
def web_only(service_factory: Callable[..., Service]) -> Iterator[Service]:
    """The web process alone (the webhook needs only Redis), started with a low soft limit."""
    service = service_factory(REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT_SECONDS))
    with soft_open_files_limit(STARTING_SOFT_LIMIT):
        service.start("web")
    # This process holds the thousand sockets: its own soft limit up to its hard limit.
    with soft_open_files_limit(resource.getrlimit(resource.RLIMIT_NOFILE)[1]):
        service.wait_healthy()
        yield service


def test_a_thousand_slow_sockets_neither_block_webhooks_nor_stay_open(
    web_only: Service,
) -> None:
    """500 half-sent headers and 500 signed webhooks dribbling their body at a byte a second:
    meanwhile a signed webhook is answered 200 within 1 s; then every slow socket is answered
    408 with the JSON error and closed by the server within its deadline (3 s here) plus
    slack, and the closes are counted by phase."""
    service = web_only
    web = uvicorn_process(service)
    soft, hard = web.rlimit(psutil.RLIMIT_NOFILE)
    assert soft == hard >= HALF_HEADERS + DRIBBLED + 100, (soft, hard)
    poster = Poster(service, timeout_seconds=5)
    try:
        sockets = open_slow_sockets(service, poster)
        first_opened = sockets[0].opened
        sim = service.simulator()
        started = time.monotonic()
        answer = poster.post(sim.inbound_form(phone(1), "a real order while the slow ones wait"))
        answered = time.monotonic()
        assert answer.status == 200, answer.body
        assert answered - started < 1.0
        # Meanwhile: before the first slow socket's deadline, so all thousand were still open.
        assert answered - first_opened < REQUEST_TIMEOUT_SECONDS
        assert len(web.net_connections(kind="tcp")) > HALF_HEADERS + DRIBBLED

        wait_until_closed(sockets, sockets[-1].opened + REQUEST_TIMEOUT_SECONDS + SLACK_SECONDS)
    finally:
        poster.close()
        for slow in locals().get("sockets", []):
            slow.sock.close()

    open_for = {slow.kind: [] for slow in sockets}  # type: dict[str, list[float]]
    for slow in sockets:
        assert slow.closed is not None, f"a {slow.kind} socket was still open"
        open_for[slow.kind].append(slow.closed - slow.opened)
        status, headers, body = parse_answer(slow.received)
        assert status == 408, (slow.kind, slow.received[:200])
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert "server" not in headers
    every = [seconds for values in open_for.values() for seconds in values]
    assert min(every) >= REQUEST_TIMEOUT_SECONDS - 0.1
    assert max(every) <= REQUEST_TIMEOUT_SECONDS + SLACK_SECONDS
    assert all(0 < slow.sent < len(slow.pending) for slow in sockets if slow.kind == "body")

    counted = timeouts_by_phase(service)
    assert counted["headers"] >= HALF_HEADERS
    assert counted["body"] >= DRIBBLED
    record(
        "slow_clients",
        sockets=len(sockets),
        webhook_seconds=round(answered - started, 3),
        open_seconds={
            kind: [round(min(values), 2), round(max(values), 2)]
            for kind, values in open_for.items()
        },
        web_soft_limit=soft,
    )


def test_a_keep_alive_client_is_not_cut_off_and_answers_carry_no_server_banner(
    web_only: Service,
) -> None:
    """Six requests on one connection, 0.8 s apart (longer in all than the 3 s deadline):
    each answered 200 on the same socket, without a ``server`` header and with the security
    headers."""
    service = web_only
    parts = urllib.parse.urlsplit(service.base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        started = time.monotonic()
        first_socket = None
        for _ in range(6):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("server") is None
            assert response.getheader("x-content-type-options") == "nosniff"
            assert response.getheader("x-frame-options") == "DENY"
            first_socket = first_socket or conn.sock
            assert conn.sock is first_socket, "the connection was closed and reopened"
            time.sleep(0.8)
        assert time.monotonic() - started > REQUEST_TIMEOUT_SECONDS
    finally:
        conn.close()
