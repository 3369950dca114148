"""The web process' HTTP protocol: uvicorn's httptools protocol with a deadline for receiving a
whole request, so a client that sends its headers or body slowly cannot hold a connection (and a
file descriptor) for ever. The Procfile selects it with
``uvicorn --http wa_sessions.webhook.server:DeadlineHttpToolsProtocol``.

uvicorn has no such deadline: its keep-alive timer is armed only after a response and disarmed
by any byte received, so a fresh connection that sends half its headers, or a request whose
body comes one byte a second, stays open as long as the client likes. Here a timer is armed when
the connection is made and again when each request begins; the last byte of the request disarms
it (the app's own time is not limited here). When it fires, the client is answered 408 with a
JSON error, if nothing was answered on the connection yet for that request, and the connection
is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from wa_sessions.metrics import API_ERRORS, REQUEST_TIMEOUTS
from wa_sessions.security_headers import SECURITY_HEADERS

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_CODE = "request_timeout"

# What the request still lacked when its deadline passed (``REQUEST_TIMEOUTS``' label).
_HEADERS, _BODY, _IDLE = "headers", "body", "idle"


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that gives each request ``request_timeout_seconds`` to arrive,
    headers and body, counted from the connection (its first request) or from the request's
    first byte (the next ones on a keep-alive connection).

    A connection that received stray bytes after a response but no new request (uvicorn's
    keep-alive timer is disarmed by them) is closed at the same deadline, or at the keep-alive
    timeout if that is longer. uvicorn builds one instance per connection, so the value is a
    class attribute, set by the composition root before the server starts (``configure``).
    """

    request_timeout_seconds: ClassVar[float] = 10.0

    @classmethod
    def configure(cls, *, request_timeout_seconds: float) -> None:
        if request_timeout_seconds <= 0:
            raise ValueError("request_timeout_seconds must be positive")
        cls.request_timeout_seconds = request_timeout_seconds

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = _HEADERS

    # -- the deadline's life: armed per request, disarmed by its last byte --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm(_HEADERS, self.request_timeout_seconds)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(_HEADERS, self.request_timeout_seconds)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = _BODY

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        # A pipelined request starts now; its own deadline (if still unread) is already armed.
        idle = not self.pipeline and self._deadline is None
        super().on_response_complete()
        if idle and not self.transport.is_closing():
            self._arm(_IDLE, max(self.request_timeout_seconds, self.timeout_keep_alive))

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection now belongs to the WebSocket protocol
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # -- when it passes --

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        REQUEST_TIMEOUTS.labels(self._phase).inc()
        if self._may_answer():
            API_ERRORS.labels(REQUEST_TIMEOUT_CODE).inc()
            self.transport.write(self._timeout_response())
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # What connection_lost will do, done now: the app, waiting for the body, is told the
            # client went away, and anything it still sends is dropped, never written after 408.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _may_answer(self) -> bool:
        """Whether the connection is at the start of a response for the late request: nothing
        of an earlier request's response still in flight, nothing of this one's sent."""
        if self._phase == _IDLE or self.pipeline:
            return False
        cycle = self.cycle
        if self._phase == _BODY:
            # Its headers were read, so ``cycle`` is this request's.
            return not cycle.response_started
        # Headers incomplete: ``cycle`` (if any) is the previous request's.
        return cycle is None or cycle.response_complete

    def _timeout_response(self) -> bytes:
        body = json.dumps(
            {
                "error": {
                    "code": REQUEST_TIMEOUT_CODE,
                    "message": "the request was not received within "
                    f"{self.request_timeout_seconds:g} seconds",
                }
            }
        ).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *SECURITY_HEADERS,
        ]
        lines = [STATUS_LINE[408], *(name + b": " + value + b"\r\n" for name, value in headers)]
        return b"".join([*lines, b"\r\n", body])


def raise_open_file_limit() -> int:
    """Raises this process' soft limit on open files to its hard limit and returns it: each
    connection is a file descriptor, and a soft limit of 1,024 (a common default) is reached
    long before ``--limit-concurrency`` or the request deadline can help."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open files limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard
