"""The console benchmark's data, written through the service's own code paths: many phones'
sessions through the webhook's ingest script and the workers' drain, some of them ended by
``SessionService`` (completed, expired), and one long conversation whose replies are recorded
by the drain's own effects (rule-based extraction, a sender that hands back Twilio sids).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from tools.demo import SANDBOX_NUMBER, new_message_sid
from wa_sessions.replies.sender import SendFailure, SendResult
from wa_sessions.statemachine.models import DeliveryStatus, Message, SessionUpdate
from wa_sessions.statemachine.redis.inbox import Inbox
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms
from wa_sessions.workers.handlers import drain_conversation

from .inproc import fill_parallel
from .load import phone
from .workers import worker_deps

#: Three business numbers: most sessions on the sandbox number, 15% and 5% on the others (a
#: filter on the smallest skips 19 index entries for each row it shows).
BUSINESSES = (SANDBOX_NUMBER, "+14155550100", "+14155550199")
#: Every 10th phone's session is completed and every 20th (offset 5) expired by an operator.
COMPLETE_EVERY, EXPIRE_EVERY = 10, 20
ORDER = {
    "items": [{"name": "Product A", "quantity": 2}, {"name": "Product B", "quantity": 1}],
    "total_amount": 34.5,
    "currency": "USD",
}
ORDER_TEXTS = (
    "Hi, I'd like 2 x Product A please",
    "Add 1 x Product B and deliver to 42 Wallaby Way",
    "Can I change that to 3 x Product A?",
    "Thanks, what time will it arrive?",
)


def business_of(i: int) -> str:
    """Phone ``i``'s business number: 15% on the second (a third of them completed), 5% on
    the third, the rest on the sandbox number."""
    r = i % 20
    return BUSINESSES[2] if r == 7 else BUSINESSES[1] if r in (1, 10, 15) else BUSINESSES[0]


@dataclass(frozen=True)
class Seeded:
    sessions: int
    completed: int
    expired: int
    #: The long conversation: its session id, phone and stored messages.
    long_session: str
    long_phone: str
    long_messages: int
    #: A phone of the many, for the phone search.
    search_phone: str
    seconds: float


@dataclass(frozen=True, slots=True)
class SidSender:
    """Hands back a fresh Twilio sid for each reply, as Twilio's create would, without a
    network call: the replies are stored with delivery tracking like real ones."""

    name: str = "bench"
    budget_seconds: float = 0.0

    async def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        return SendResult(sid="SM" + uuid.uuid4().hex, status=DeliveryStatus.SENT.value, sent=True)


def _shape_part(url: str, first: int, count: int) -> tuple[int, int]:
    """Gives every other session of its phones an order (``update_session``, as the session
    API does), then completes every 10th and expires every 20th at offset 5."""
    service = SessionService(redis.Redis.from_url(url, decode_responses=True))
    completed = expired = 0
    for i in range(first, first + count):
        ordered, ends = i % 2 == 0, i % COMPLETE_EVERY == 0 or i % EXPIRE_EVERY == 5
        if not (ordered or ends):
            continue
        session = service.get_session_by_phone(phone(i), business_of(i), include_messages=False)
        assert session is not None, i
        if ordered:
            service.update_session(session.session_id, SessionUpdate(order_details=ORDER))
        if i % COMPLETE_EVERY == 0:
            service.complete_session(session.session_id)
            completed += 1
        elif ends:
            service.expire_session(session.session_id)
            expired += 1
    return completed, expired


def _shape_parallel(url: str, sessions: int, processes: int = 2) -> tuple[int, int]:
    share = math.ceil(sessions / processes)
    parts = [(url, i * share, min(share, sessions - i * share)) for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        done = pool.starmap(_shape_part, [p for p in parts if p[2] > 0])
    return sum(c for c, _ in done), sum(e for _, e in done)


def long_conversation(url: str, phone_number: str, messages: int) -> tuple[str, int]:
    """``messages`` stored messages in one session: customer messages each drained by the
    worker's own handler, which extracts the order and records its reply (two a round)."""
    base = worker_deps(url)
    # The webhook's per-phone rate (INGEST_MESSAGES_PER_MINUTE) would refuse this fast-forward
    # of a long conversation: its inbox takes every message, as over weeks it would.
    deps = dataclasses.replace(base, sender=SidSender(), inbox=Inbox(base.service.store))
    service = deps.service
    conv = service.conversation(phone_number).key
    for k in range(messages // 2):
        now = datetime.now(UTC)
        message = Message(
            id=new_message_sid(), content=ORDER_TEXTS[k % len(ORDER_TEXTS)], timestamp=now
        )
        deps.inbox.accept(conv, message, accepted_ms=to_ms(now))
        drain_conversation(deps, conv)
    session = service.get_session_by_phone(phone_number, include_messages=False)
    assert session is not None
    return session.session_id, session.message_count


def seed(url: str, sessions: int, long_messages: int) -> Seeded:
    """FLUSHALL, then the many sessions (two customer messages each), the ended ones, and the
    long conversation last (so it is the newest session)."""
    started = time.monotonic()
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    accepted, applied = fill_parallel(
        url, sessions, 2, body=ORDER_TEXTS[0], business_of=business_of
    )
    assert accepted == applied == 2 * sessions, (accepted, applied, sessions)
    completed, expired = _shape_parallel(url, sessions)
    long_phone = phone(sessions)
    sid, count = long_conversation(url, long_phone, long_messages)
    assert count == long_messages // 2 * 2, (count, long_messages)
    return Seeded(
        sessions=sessions + 1,
        completed=completed,
        expired=expired,
        long_session=sid,
        long_phone=long_phone,
        long_messages=count,
        search_phone=phone(sessions // 40 * 20 + 4),
        seconds=time.monotonic() - started,
    )
