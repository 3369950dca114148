"""The request deadline of the web process' HTTP protocol, on a real uvicorn server (in a thread,
on a loopback port) with a half-second deadline, driven over raw sockets: slow headers, slow
bodies and stray bytes are cut off; a slow app and a busy keep-alive client are not."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from prometheus_client import REGISTRY
from starlette.types import Receive, Scope, Send

from wa_sessions.embedded_redis import free_port
from wa_sessions.webhook.server import DeadlineHttpToolsProtocol

DEADLINE = 0.5
KEEP_ALIVE = 1.0
#: How late after its deadline a connection may be closed on a busy two-core machine.
SLACK = 2.5
REQUEST_HEAD = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n"
#: A request whose body takes longer to dribble than the test lasts.
LONG_BODY_HEAD = REQUEST_HEAD.replace(b": 10\r\n", b": 1000\r\n")


class QuickDeadline(DeadlineHttpToolsProtocol):
    """The protocol with a test deadline, leaving the class the web process uses untouched."""

    request_timeout_seconds = DEADLINE


class App:
    """``/echo`` answers with the body's length once it has all of it; ``/slow`` reads the body
    and answers after 1.5 s (three deadlines); ``/early`` answers 413 without reading the body.
    It records what ``receive`` told it, so a test sees the app was told the client left."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/early":
            await self._answer(send, 413, b"too large")
            return
        body = b""
        while True:
            message = await receive()
            self.events.append(message["type"])
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if scope["path"] == "/slow":
            await asyncio.sleep(3 * DEADLINE)
        await self._answer(send, 200, str(len(body)).encode())

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes) -> None:
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[tuple[App, int]]:
    app = App()
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=QuickDeadline,
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield app, port
    server.should_exit = True
    thread.join(10)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE + SLACK + 5)


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sent until it closed the connection, and when it closed it."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic()


def drip(sock: socket.socket, byte: bytes, seconds: float) -> tuple[bytes, float]:
    """Sends ``byte`` every 0.2 s, keeping what the server answers, until it closes the
    connection or ``seconds`` pass; returns the answer and when that was."""
    sock.settimeout(0.2)
    received = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sock.sendall(byte)
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic()


def timeouts(phase: str) -> float:
    value = REGISTRY.get_sample_value("wa_sessions_request_timeouts_total", {"phase": phase})
    return value or 0.0


def parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def assert_closed_at_deadline(started: float, closed: float) -> None:
    assert DEADLINE - 0.05 <= closed - started <= DEADLINE + SLACK, closed - started


def test_half_sent_headers_are_answered_408_in_json_and_closed_at_the_deadline(
    server: tuple[App, int],
) -> None:
    """A request line and part of a header, then nothing: 408 with the JSON error naming the
    deadline, the connection closed, counted under ``headers``; the app never ran."""
    app, port = server
    before = timeouts("headers")
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: test\r\nX-Half")
        answer, closed = read_until_closed(sock)
    assert_closed_at_deadline(started, closed)
    status, headers, body = parse(answer)
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    assert body == {
        "error": {
            "code": "request_timeout",
            "message": f"the request was not received within {DEADLINE:g} seconds",
        }
    }
    assert timeouts("headers") == before + 1
    assert app.events == []


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(
    server: tuple[App, int],
) -> None:
    """Connecting is enough to start the clock: a silent connection is not held open."""
    _, port = server
    with connect(port) as sock:
        started = time.monotonic()
        answer, closed = read_until_closed(sock)
    assert_closed_at_deadline(started, closed)
    assert parse(answer)[0] == 408


def test_a_body_dribbled_past_the_deadline_is_answered_408_and_the_app_told_the_client_left(
    server: tuple[App, int],
) -> None:
    """Headers at once, then one body byte every 0.2 s: the deadline runs from the request's
    first byte, not from the last byte received; the waiting app receives ``http.disconnect``
    and whatever it would answer is never written after the 408."""
    app, port = server
    before = timeouts("body")
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(LONG_BODY_HEAD)
        answer, closed = drip(sock, b"x", DEADLINE + SLACK + 1)
    assert_closed_at_deadline(started, closed)
    status, _, body = parse(answer)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert timeouts("body") == before + 1
    deadline = time.monotonic() + 2
    while "http.disconnect" not in app.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.events[-1] == "http.disconnect"


def test_an_app_slower_than_the_deadline_still_answers_once_the_request_has_arrived(
    server: tuple[App, int],
) -> None:
    """The deadline covers receiving the request only: a handler that takes three deadlines
    answers 200 on the same connection."""
    _, port = server
    with connect(port) as sock:
        sock.sendall(REQUEST_HEAD.replace(b"/echo", b"/slow") + b"0123456789")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\n10")


def test_a_keep_alive_client_making_requests_for_longer_than_the_deadline_is_not_cut_off(
    server: tuple[App, int],
) -> None:
    """Eight requests on one connection, 0.25 s apart (four deadlines in all): each is
    answered, and the connection is the same throughout."""
    _, port = server
    with connect(port) as sock:
        started = time.monotonic()
        for _ in range(8):
            sock.sendall(REQUEST_HEAD + b"0123456789")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            time.sleep(DEADLINE / 2)
        assert time.monotonic() - started > 3 * DEADLINE


def test_stray_bytes_after_a_response_do_not_hold_the_connection(
    server: tuple[App, int],
) -> None:
    """After one answered request, a line break every 0.2 s (each one disarms uvicorn's
    keep-alive timer, and none begins a request): closed at the keep-alive timeout, without a
    second answer, counted as ``idle``."""
    _, port = server
    before = timeouts("idle")
    with connect(port) as sock:
        sock.sendall(REQUEST_HEAD + b"0123456789")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        answered = time.monotonic()
        extra, closed = drip(sock, b"\r\n", KEEP_ALIVE + SLACK + 1)
    assert KEEP_ALIVE - 0.05 <= closed - answered <= KEEP_ALIVE + SLACK
    assert extra == b""
    assert timeouts("idle") == before + 1


def test_a_slow_body_after_an_early_answer_is_closed_without_a_second_answer(
    server: tuple[App, int],
) -> None:
    """The app answered 413 before reading the body; the client dribbles the body anyway. The
    connection is closed at the deadline, and no 408 follows the 413 on it."""
    _, port = server
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(LONG_BODY_HEAD.replace(b"/echo", b"/early"))
        answer, closed = drip(sock, b"x", DEADLINE + SLACK + 1)
    assert_closed_at_deadline(started, closed)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"408" not in answer


def test_the_deadline_must_be_positive() -> None:
    """``configure`` refuses a deadline that would close every connection at once."""
    with pytest.raises(ValueError, match="positive"):
        QuickDeadline.configure(request_timeout_seconds=0)
