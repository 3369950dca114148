"""HTTPS stand-ins for Twilio's media host and its CDN: real TLS servers on 127.0.0.1 with
certificates from a CA made for the test (trustme), valid for ``127.0.0.1`` and ``localhost``,
so the image fetcher runs with certificate checks on and two host names reach two servers.

Each path answers as a test set it up: an image (behind the account's basic auth, or not), a
redirect, a body trickled out slowly, or an endless one. Every request is recorded with its
``Authorization`` header.
"""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from tests.fake_apis import PNG, TWILIO_SID, TWILIO_TOKEN

BASIC_AUTH = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
#: The two names the test certificate is valid for, both on loopback.
MEDIA_HOST = "127.0.0.1"
OTHER_HOST = "localhost"

#: Writes a response through the handler; returns the body bytes it sent.
Route = Callable[[BaseHTTPRequestHandler], int]


@dataclass(frozen=True)
class Seen:
    path: str
    authorization: str | None


class MediaServer:
    """One HTTPS server; ``routes`` maps a path to how it answers."""

    def __init__(self, cert: trustme.LeafCert) -> None:
        self.requests: list[Seen] = []
        self.routes: dict[str, Route] = {}
        #: Body bytes written by each finished response, by path.
        self.sent: dict[str, int] = {}
        self.closing = threading.Event()
        self.done = threading.Event()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: a body without Content-Length ends when the connection closes.
            def do_GET(self) -> None:
                server.requests.append(Seen(self.path, self.headers.get("Authorization")))
                route = server.routes.get(self.path)
                try:
                    if route is None:
                        self.send_error(404)
                        return
                    server.sent[self.path] = route(self)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    server.sent[self.path] = -1  # the client hung up mid-body
                finally:
                    server.done.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.server = ThreadingHTTPServer((MEDIA_HOST, 0), _Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str, host: str = MEDIA_HOST) -> str:
        return f"https://{host}:{self.server.server_address[1]}{path}"

    def image(self, path: str, data: bytes = PNG, *, auth: bool = True) -> str:
        """``path`` serves ``data`` as a PNG; with ``auth``, only to the account's basic auth."""

        def route(handler: BaseHTTPRequestHandler) -> int:
            if auth and handler.headers.get("Authorization") != BASIC_AUTH:
                handler.send_error(401)
                return 0
            return _answer(handler, 200, {"Content-Type": "image/png"}, data)

        self.routes[path] = route
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes[path] = lambda h: _answer(h, status, {"Location": location}, b"")
        return self.url(path)

    def trickle(self, path: str, *, chunks: int, every_seconds: float) -> str:
        """A body of ``chunks`` bytes, one every ``every_seconds``: each read is quick, the
        whole is slow."""

        def route(handler: BaseHTTPRequestHandler) -> int:
            _head(handler, 200, {"Content-Type": "image/png", "Content-Length": str(chunks)})
            for sent in range(chunks):
                if self.closing.wait(every_seconds):
                    return sent
                handler.wfile.write(b"\x00")
                handler.wfile.flush()
            return chunks

        self.routes[path] = route
        return self.url(path)

    def endless(self, path: str, *, up_to_bytes: int, declared: int | None = None) -> str:
        """A body of up to ``up_to_bytes`` in 64 KiB writes, without Content-Length (or with
        ``declared`` as one); stops when the client hangs up."""

        def route(handler: BaseHTTPRequestHandler) -> int:
            headers = {"Content-Type": "image/png"}
            if declared is not None:
                headers["Content-Length"] = str(declared)
            _head(handler, 200, headers)
            chunk, sent = b"\x00" * 65536, 0
            while sent < up_to_bytes and not self.closing.is_set():
                handler.wfile.write(chunk)
                sent += len(chunk)
            return sent

        self.routes[path] = route
        return self.url(path)

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]

    def start(self) -> MediaServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _head(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()


def _answer(
    handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
) -> int:
    _head(handler, status, {**headers, "Content-Length": str(len(body))})
    handler.wfile.write(body)
    return len(body)


@pytest.fixture(scope="session")
def media_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_tls(media_ca: trustme.CA) -> ssl.SSLContext:
    """What the fetcher trusts: the system's defaults plus the test CA."""
    context = ssl.create_default_context()
    media_ca.configure_trust(context)
    return context


@contextmanager
def media_server(ca: trustme.CA) -> Iterator[MediaServer]:
    server = MediaServer(ca.issue_cert(MEDIA_HOST, OTHER_HOST)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def media(media_ca: trustme.CA) -> Iterator[MediaServer]:
    """Twilio's media host."""
    with media_server(media_ca) as server:
        yield server


@pytest.fixture
def cdn(media_ca: trustme.CA) -> Iterator[MediaServer]:
    """Another server: Twilio's CDN, or a host the media URL must not lead to."""
    with media_server(media_ca) as server:
        yield server
