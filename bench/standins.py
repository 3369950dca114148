"""Stand-ins for OpenAI's Responses API and Twilio's Messages API that answer after a fixed
delay, so the service's real SDK calls can be timed against slow upstreams on this machine.

One process (uvloop) serves both, on two ports, each connection an ``asyncio.Protocol`` fed to
``httptools``' request parser (the C parser uvicorn uses): HTTP/1.1 with keep-alive, each answer
written after its delay with ``loop.call_later``, so a waiting request blocks nobody. Chosen
as the cheapest correct option measured here (see ``docs/BENCHMARKS.md``, replies section).

- ``POST /v1/responses``: a completed Responses API answer whose one message holds the JSON of
  an ``ExtractionResult`` adding 5 x "Product A" (what the service's extractor
  validates, as ``responses.parse(..., text_format=ExtractionResult)`` would), with a fresh
  ``resp_`` id.
- ``POST /2010-04-01/Accounts/{sid}/Messages.json``: 201 with a message resource (fresh ``SM``
  sid, status ``queued``). It does not echo ``to``/``body`` (the service reads only ``sid``
  and ``status``) and checks neither auth nor fields, to stay cheap; it records the arrival
  time (``time.time()``) and the raw form of every create, parsed only when read.
- Control, on either port: ``POST /_config?openai=SECONDS&twilio=SECONDS`` sets the delays,
  ``POST /_reset`` forgets the records, ``GET /_records?since=N`` returns records ``N..`` as
  JSON ``{"next": M, "records": [[time, to, body], ...]}`` (``to`` without ``whatsapp:``),
  ``GET /_stats`` the request counts, this process's CPU seconds and those spent in control
  calls.

Run: ``python -m bench.standins OPENAI_PORT TWILIO_PORT READY_FILE``; SIGTERM exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httptools
import uvloop

from wa_sessions.orders.models import ExtractionResult, ItemAction, ItemChange

#: What the OpenAI stand-in extracts from every message: each one adds 5 of "Product A", so the
#: k-th reply to a phone whose k messages were all applied reads "5k x Product A".
QUANTITY = 5
ITEM = "Product A"
RESULT = ExtractionResult(
    found=True, changes=[ItemChange(action=ItemAction.ADD, name=ITEM, quantity=QUANTITY)]
)
_WHATSAPP = "whatsapp:"
#: The Twilio account the service is configured with; the bench's webhooks name it too (the
#: service refuses a webhook of another account).
ACCOUNT_SID = "AC" + "0" * 32


def _openai_body() -> tuple[bytes, bytes]:
    """The answer's bytes before and after its id (16 hex digits, so the length is fixed)."""
    answer = {
        "id": "resp_@@ID@@",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": "gpt-standin",
        "output": [
            {
                "type": "message",
                "id": "msg_standin",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": RESULT.model_dump_json(), "annotations": []}
                ],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    before, _, after = json.dumps(answer).encode().partition(b"@@ID@@")
    return before, after


def _twilio_body() -> tuple[bytes, bytes]:
    """A message resource's bytes before and after the 32 hex digits of its sid."""
    answer = {
        "sid": "SM@@ID@@",
        "account_sid": None,
        "to": None,
        "from": None,
        "body": None,
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": "1",
        "num_media": "0",
        "api_version": "2010-04-01",
        "price": None,
        "error_code": None,
        "error_message": None,
        "date_created": None,
        "uri": "/2010-04-01/Accounts/AC/Messages/SM.json",
    }
    before, _, after = json.dumps(answer).encode().partition(b"@@ID@@")
    return before, after


def _head(status: str, length: int, *, keep_alive: bool) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode()


@dataclass
class State:
    """Shared by both servers: delays, counters, and the Twilio stand-in's records."""

    delays: dict[str, float] = field(default_factory=lambda: {"openai": 0.0, "twilio": 0.0})
    counts: dict[str, int] = field(default_factory=lambda: {"openai": 0, "twilio": 0})
    records: list[tuple[float, bytes]] = field(default_factory=list)
    #: CPU seconds spent answering control calls (the bench's, not the APIs' cost).
    control_cpu: float = 0.0
    openai: tuple[bytes, bytes] = field(default_factory=_openai_body)
    twilio: tuple[bytes, bytes] = field(default_factory=_twilio_body)

    def control(self, method: bytes, target: bytes) -> tuple[str, bytes]:
        url = urlsplit(target.decode())
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if method == b"POST" and url.path == "/_config":
            for name in ("openai", "twilio"):
                if name in query:
                    self.delays[name] = float(query[name])
            return "200 OK", json.dumps(self.delays).encode()
        if method == b"POST" and url.path == "/_reset":
            self.records.clear()
            return "200 OK", b"{}"
        if method == b"GET" and url.path == "/_records":
            since = int(query.get("since", "0"))
            rows = []
            for at, raw in self.records[since:]:
                form = parse_qs(raw.decode(), keep_blank_values=True)
                to = form.get("To", [""])[0]
                rows.append([at, to.removeprefix(_WHATSAPP), form.get("Body", [""])[0]])
            return "200 OK", json.dumps({"next": since + len(rows), "records": rows}).encode()
        if method == b"GET" and url.path == "/_stats":
            body = {
                "counts": self.counts,
                "cpu_seconds": time.process_time(),
                "control_cpu_seconds": self.control_cpu,
            }
            return "200 OK", json.dumps(body).encode()
        return "404 Not Found", b'{"message": "no such route"}'


class Connection(asyncio.Protocol):
    """One client connection; ``kind`` is which API this port stands in for."""

    def __init__(self, state: State, kind: str) -> None:
        self.state = state
        self.kind = kind
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.target = b""
        self.body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_head("400 Bad Request", 0, keep_alive=False), False)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.target = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        state = self.state
        method = self.parser.get_method()
        keep_alive = bool(self.parser.should_keep_alive())
        target = self.target
        if target.startswith(b"/_"):
            cpu = time.process_time()
            status, body = state.control(method, target)
            state.control_cpu += time.process_time() - cpu
            self._write(_head(status, len(body), keep_alive=keep_alive) + body, keep_alive)
            return
        n = state.counts[self.kind] = state.counts[self.kind] + 1
        if self.kind == "openai" and method == b"POST" and target == b"/v1/responses":
            before, after = state.openai
            body = b"%s%016x%s" % (before, n, after)
            status = "200 OK"
        elif (
            self.kind == "twilio"
            and method == b"POST"
            and target.startswith(b"/2010-04-01/Accounts/")
            and target.endswith(b"/Messages.json")
        ):
            state.records.append((time.time(), b"".join(self.body)))
            before, after = state.twilio
            body = b"%s%032x%s" % (before, n, after)
            status = "201 Created"
        else:
            status, body = "404 Not Found", b'{"message": "no such route"}'
        payload = _head(status, len(body), keep_alive=keep_alive) + body
        delay = state.delays[self.kind]
        if delay > 0:
            self.loop.call_later(delay, self._write, payload, keep_alive)
        else:
            self._write(payload, keep_alive)

    def _write(self, payload: bytes, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(payload)
        if not keep_alive:
            transport.close()


async def serve(openai_port: int, twilio_port: int, ready: Path) -> None:
    loop = asyncio.get_running_loop()
    state = State()
    servers = [
        await loop.create_server(
            lambda kind=kind: Connection(state, kind), "127.0.0.1", port, backlog=4096
        )
        for kind, port in (("openai", openai_port), ("twilio", twilio_port))
    ]
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    ready.write_text("ready")
    await stop.wait()
    for server in servers:
        server.close()


# ---- the bench's side ------------------------------------------------------------------------


class StandIns:
    """The stand-ins' process, started and driven from the bench."""

    def __init__(self, tmp: Path) -> None:
        from wa_sessions.embedded_redis import free_port

        self.tmp = tmp
        self.openai_port = free_port()
        self.twilio_port = free_port()
        self.proc: Any = None

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.twilio_port}"

    def env(self) -> dict[str, str]:
        """What points the service's SDKs here."""
        return {
            "OPENAI_API_KEY": "sk-bench-standin",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.openai_port}/v1",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_API_BASE_URL": f"http://127.0.0.1:{self.twilio_port}",
        }

    def start(self) -> StandIns:
        import subprocess

        ready = self.tmp / f"standins-{self.twilio_port}.ready"
        ready.unlink(missing_ok=True)
        root = Path(__file__).resolve().parents[1]
        with (self.tmp / "standins.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.standins",
                    str(self.openai_port),
                    str(self.twilio_port),
                    str(ready),
                ],
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stand-ins did not start: see {self.tmp / 'standins.log'}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def _call(self, method: str, path: str) -> Any:
        data = b"" if method == "POST" else None
        req = urllib.request.Request(self.control_url + path, data=data, method=method)  # noqa: S310
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read())

    def set_delays(self, openai: float, twilio: float) -> None:
        self._call("POST", f"/_config?openai={openai}&twilio={twilio}")

    def reset(self) -> None:
        self._call("POST", "/_reset")

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_stats"))

    def requests(self) -> int:
        counts = self.stats()["counts"]
        return int(counts["openai"]) + int(counts["twilio"])

    def records(self, since: int = 0) -> list[list[Any]]:
        return list(self._call("GET", f"/_records?since={since}")["records"])


def main(argv: list[str]) -> int:
    from .replies import raise_priority

    openai_port, twilio_port, ready = int(argv[0]), int(argv[1]), Path(argv[2])
    raise_priority()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(openai_port, twilio_port, ready))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
