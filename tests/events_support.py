"""What the outgoing events' tests share: a real HTTP receiver (aiohttp on a free loopback port)
that checks every request's signature with the ``standardwebhooks`` library itself, outbox
entries written as the contract says, and one pass of a minimal outbox runner (XREADGROUP,
``handle``, XACK of what it returns) for the consumer's own tests; the real runner drives it in
``tests/integration/test_events_runner.py`` and the end-to-end test."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from aiohttp import web
from standardwebhooks import Webhook

from wa_sessions.events.consumer import DeliveryPolicy, EventsConsumer
from wa_sessions.events.sender import WebhookSender
from wa_sessions.events.store import GROUP, RedisEventStore
from wa_sessions.statemachine.redis.keys import Keys

#: 32 bytes, base64.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8sqoREt2c3c="
CUSTOMER = "+14155550001"
BUSINESS = "+14155238886"


@dataclass(frozen=True)
class Answer:
    status: int = 200
    delay_seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    """One request that passed the signature check."""

    event: dict[str, Any]
    headers: dict[str, str]
    status: int
    at: float


class Receiver:
    """The business's backend: verifies each request (a forged one is answered 401 and kept
    in ``forged``), then answers what ``answer(event, nth request of that event)`` says."""

    def __init__(
        self, answer: Callable[[dict[str, Any], int], Answer] | None = None, secret: str = SECRET
    ) -> None:
        self.answer = answer or (lambda event, nth: Answer())
        self.webhook = Webhook(secret)
        self.received: list[Received] = []
        self.forged: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        headers = dict(request.headers)
        try:
            event = self.webhook.verify(body, headers)
        except Exception as exc:
            self.forged.append(str(exc))
            return web.Response(status=401)
        nth = sum(1 for r in self.received if r.event["id"] == event["id"]) + 1
        answer = self.answer(event, nth)
        self.received.append(Received(event, headers, answer.status, time.monotonic()))
        if answer.delay_seconds:
            await asyncio.sleep(answer.delay_seconds)
        return web.Response(status=answer.status, headers=answer.headers)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hooks"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self) -> list[str]:
        """Event ids answered 2xx, in the order they arrived."""
        return [r.event["id"] for r in self.received if 200 <= r.status < 300]

    def attempts(self, event_id: str) -> list[Received]:
        return [r for r in self.received if r.event["id"] == event_id]


def session_data(session_id: str, status: str = "completed") -> dict[str, Any]:
    """A session as ``SessionView`` shows it, as the outbox carries it."""
    return {
        "session_id": session_id,
        "phone_number": CUSTOMER,
        "business_number": BUSINESS,
        "status": status,
        "created_at": "2026-01-01T12:00:00.000Z",
        "last_activity": "2026-01-01T12:05:00.000Z",
        "last_inbound_at": "2026-01-01T12:04:00.000Z",
        "ended_at": None if status == "active" else "2026-01-01T12:05:00.000Z",
        "end_reason": None if status == "active" else "customer",
        "message_count": 4,
        "trimmed_count": 0,
        "order_details": {"items": [{"name": "apples", "quantity": 6}]},
        "context": {},
        "window": {"open": True},
        "taken_over_by": None,
    }


async def add_entry(
    client: redis.asyncio.Redis,
    session_id: str,
    kind: str = "session.completed",
    data: dict[str, Any] | str | None = None,
    keys: Keys | None = None,
) -> str:
    """XADDs one contract entry to the outbox; its id."""
    if data is None:
        data = session_data(session_id, kind.removeprefix("session.").replace("started", "active"))
    fields = {
        "type": kind,
        "session_id": session_id,
        "conv": f"{CUSTOMER}|{BUSINESS}",
        "at": str(int(time.time() * 1000)),
        "data": data if isinstance(data, str) else json.dumps(data),
    }
    return str(await client.xadd((keys or Keys()).outbox, fields))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Entry:
    id: str
    session_id: str


async def feed(
    client: redis.asyncio.Redis, consumer: EventsConsumer, keys: Keys | None = None
) -> int:
    """One pass of a minimal outbox runner: new entries of the group to ``handle``, XACK of
    what it returns. The number of entries handed."""
    outbox = (keys or Keys()).outbox
    await consumer.store.ensure_group()
    answer = await client.xreadgroup(GROUP, "test", {outbox: ">"}, count=100)
    entries = [
        Entry(str(entry_id), str(fields.get("session_id", "")))
        for _stream, items in (answer or [])
        for entry_id, fields in items
    ]
    done = await consumer.handle(entries)
    if done:
        await client.xack(outbox, GROUP, *done)
    return len(entries)


def make_consumer(
    client: redis.asyncio.Redis,
    url: str,
    *,
    timeout_seconds: float = 2.0,
    retry_window_seconds: float = 60.0,
    backoff_seconds: float = 0.05,
    max_in_flight: int = 8,
) -> EventsConsumer:
    policy = DeliveryPolicy(
        timeout_seconds=timeout_seconds,
        retry_window_seconds=retry_window_seconds,
        backoff_seconds=backoff_seconds,
    )
    return EventsConsumer(
        RedisEventStore(client, Keys()),
        WebhookSender(url, SECRET, timeout_seconds),
        policy,
        max_in_flight=max_in_flight,
        poll_seconds=0.05,
    )


async def wait_for(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Polls ``condition`` (sync or async) with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)
