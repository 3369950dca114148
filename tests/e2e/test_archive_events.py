"""Issue #16 end to end through the Procfile's processes (web, worker, scheduler, outbox): a
message posted to the signed webhook and its session completed through the session API reach
the business's backend as signed Standard Webhooks events (checked with the
``standardwebhooks`` library), and the session survives a FLUSHALL of Redis in the archive."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from standardwebhooks import Webhook

from tests.e2e.conftest import Service
from tests.support import poll
from wa_sessions.embedded_redis import free_port
from wa_sessions.statemachine.redis.keys import Keys

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8sqoREt2c3c="
PHONE = "+14155550777"
OUTBOX = Keys().outbox


class VerifyingReceiver:
    """The business's backend on a free loopback port: keeps each event whose signature the
    library verifies, answers 401 to any other request."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.forged = 0
        webhook = Webhook(SECRET)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    event = webhook.verify(body, dict(self.headers.items()))
                except Exception:
                    receiver.forged += 1
                    self.send_response(401)
                else:
                    receiver.events.append(event)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[VerifyingReceiver]:
    server = VerifyingReceiver()
    try:
        yield server
    finally:
        server.close()


def test_a_completed_session_is_sent_as_signed_events_and_read_from_the_archive_after_a_flush(
    service_factory: Callable[..., Service], receiver: VerifyingReceiver
) -> None:
    """Posted, completed through the API: ``session.started`` then ``session.completed``
    arrive signed; once archived, a FLUSHALL leaves ``GET /session/{phone}`` answering from SQL
    with ``archived: true``."""
    service = service_factory(
        EVENTS_WEBHOOK_URL=receiver.url, EVENTS_WEBHOOK_SECRET=SECRET
    ).start_all()
    sim = service.simulator()
    assert sim.send(PHONE, "I need 5 units of Product A").status == 200
    session_id = sim.wait_for_messages(PHONE, 1, 20)["session"]["session_id"]
    assert sim.request("POST", f"/session/{session_id}/complete", admin=True).status == 200

    def completed_arrived() -> bool:
        return bool(receiver.of_type("session.completed"))

    poll(completed_arrived, timeout=30)
    started, completed = receiver.of_type("session.started"), receiver.of_type("session.completed")
    assert [e["data"]["session_id"] for e in started + completed] == [session_id] * 2
    assert completed[0]["data"]["status"] == "completed"
    assert receiver.events.index(started[0]) < receiver.events.index(completed[0])
    assert receiver.forged == 0

    client = redis.Redis.from_url(service.redis_url, decode_responses=True)
    try:
        # The archive group acknowledges the end once its transaction committed.
        poll(lambda: client.xpending(OUTBOX, "archive")["pending"] == 0, timeout=30)
        poll(lambda: _archived(client), timeout=30)
        client.flushall()
    finally:
        client.close()
    answer = sim.session(PHONE)
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["session"]["session_id"] == session_id
    assert body["session"]["archived"] is True
    assert body["session"]["status"] == "completed"
    contents = [json.dumps(m) for m in body["conversation_history"]]
    assert any("Product A" in c for c in contents)


def _archived(client: redis.Redis) -> bool:
    """Every outbox entry was read by the archive group and acknowledged."""
    groups = {g["name"]: g for g in client.xinfo_groups(OUTBOX)}
    archive = groups.get("archive")
    return archive is not None and archive["lag"] == 0 and archive["pending"] == 0
