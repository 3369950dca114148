"""``POST /twilio-status`` through the ASGI test client on the real Redis: Twilio's delivery
status callbacks in order, out of order, repeated, forged, malformed and for unknown messages.

Replies come from the real drain with a recording sender standing in for Twilio's API; the
callbacks are signed with the twilio SDK's own ``RequestValidator``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from twilio.request_validator import RequestValidator

from tests.conftest import FakeClock
from tests.signing import sign_pairs
from wa_sessions.config import Settings
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.replies.sender import SendFailure, SendResult
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.delivery import UNMAPPED_TTL_SECONDS
from wa_sessions.statemachine.redis.inbox import AsyncInbox, Inbox, InboxPolicy
from wa_sessions.statemachine.service import SessionService
from wa_sessions.statemachine.steps import to_ms
from wa_sessions.webhook import WebDeps, create_app
from wa_sessions.workers import handlers
from wa_sessions.workers.broker import DrainWakeMessages
from wa_sessions.workers.handlers import WorkerDeps
from wa_sessions.workers.queues import QueueKeys

TOKEN = "status-test-token"
BASE = "https://wa.example.test"
STATUS = "/twilio-status"
ACCOUNT = "AC" + "0" * 32
PHONE = "+14155550100"
BUSINESS = "+14155238886"
CONV = Conversation(PHONE, BUSINESS).key


class _ExplicitSettings(Settings):
    """Settings from constructor arguments only: the test process's environment is ignored."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@dataclass
class NextSid:
    """A sender that answers with MessageSids the test chose (or fresh ones)."""

    name: str = "twilio"
    budget_seconds: float = 0.0
    sids: list[str] = field(default_factory=list)
    #: Called with the MessageSid once Twilio "accepted" the reply, before the drain commits it.
    on_accepted: Callable[[str], None] | None = None

    async def send(self, *, to: str, from_: str, body: str) -> SendResult | SendFailure:
        sid = self.sids.pop(0) if self.sids else new_sid()
        if self.on_accepted is not None:
            self.on_accepted(sid)
        return SendResult(sid=sid, status="queued", sent=True)


@dataclass
class Web:
    client: TestClient
    service: SessionService
    deps: WorkerDeps
    sender: NextSid
    clock: FakeClock

    def reply(self, body: str = "3 boxes of apples") -> str:
        """A customer message drained with effects; returns the reply's MessageSid."""
        message = Message(id=new_sid(), content=body, timestamp=self.clock())
        self.deps.inbox.accept(CONV, message, accepted_ms=to_ms(self.clock()))
        handlers.drain_conversation(self.deps, CONV)
        reply = self.outbound()[-1]
        return str(reply.metadata["twilio_sid"])

    def outbound(self) -> list[Message]:
        sid = self.service.store.latest_session_id(CONV)
        assert sid is not None
        return [
            m
            for m in self.service.store.messages(sid)
            if m.direction.value == "outbound" and m.message_type.value == "text"
        ]

    def status_of(self, sid: str) -> dict[str, Any]:
        [message] = [m for m in self.outbound() if m.metadata.get("twilio_sid") == sid]
        return message.metadata

    def post(
        self, fields: dict[str, str], *, token: str = TOKEN, url: str = BASE + STATUS
    ) -> httpx.Response:
        signature = RequestValidator(token).compute_signature(url, fields)
        return self.client.post(
            STATUS,
            content=urlencode(fields),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )

    def callback(self, sid: str, status: str, **extra: str) -> httpx.Response:
        return self.post(callback_form(sid, status, **extra))


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def callback_form(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": ACCOUNT,
        "From": f"whatsapp:{BUSINESS}",
        "To": f"whatsapp:{PHONE}",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def outcome_count(outcome: str) -> float:
    return sample("wa_sessions_webhook_requests_total", {"endpoint": "status", "outcome": outcome})


@pytest.fixture
def web(redis_client: redis.Redis, redis_url: str, clock: FakeClock) -> Iterator[Web]:
    service = SessionService(redis_client, business_number=BUSINESS, clock=clock)
    async_client = redis.asyncio.Redis.from_url(redis_url)
    sender = NextSid()
    deps = WorkerDeps(
        service=service,
        inbox=Inbox(service.store, InboxPolicy()),
        wake=lambda conv: None,
        extractor=RuleBasedOrderExtractor(),
        sender=sender,
    )

    app = create_app(
        WebDeps(
            settings=_ExplicitSettings(
                environment="development",
                twilio_auth_token=TOKEN,
                twilio_account_sid=ACCOUNT,
                admin_token="admin",
                public_base_url=BASE,
                business_number=BUSINESS,
            ),
            service=service,
            inbox=AsyncInbox(
                async_client,
                service.store.keys,
                wake_message=DrainWakeMessages(QueueKeys(namespace="test-status"), "drain"),
            ),
        )
    )
    with TestClient(app) as client:
        yield Web(client, service, deps, sender, clock)


def test_callbacks_in_order_move_the_reply_to_read(web: Web) -> None:
    """queued, sent, delivered, read: each is applied and answered with empty TwiML."""
    sid = web.reply()
    applied = sample("wa_sessions_delivery_status_total", {"status": "read"})

    responses = [web.callback(sid, s) for s in ("queued", "sending", "sent", "delivered", "read")]

    assert [r.status_code for r in responses] == [200] * 5
    assert responses[0].headers["content-type"].startswith("text/xml")
    assert responses[0].content.endswith(b"<Response/>")
    assert web.status_of(sid)["delivery_status"] == "read"
    assert web.service.store.outbound(sid)["status"] == "read"
    assert sample("wa_sessions_delivery_status_total", {"status": "read"}) == applied + 1


def test_a_late_status_never_overwrites_a_later_one(web: Web) -> None:
    """read arrives before sent and delivered: the late ones are stale, read stays."""
    sid = web.reply()
    stale = outcome_count("stale")

    for status in ("read", "sent", "delivered", "queued"):
        assert web.callback(sid, status).status_code == 200

    assert web.status_of(sid)["delivery_status"] == "read"
    assert outcome_count("stale") == stale + 3


def test_repeated_callbacks_are_deduplicated(web: Web) -> None:
    """The same sid and status twice: the second is a duplicate, nothing changes."""
    sid = web.reply()
    duplicates = outcome_count("duplicate")

    first = web.callback(sid, "delivered")
    second = web.callback(sid, "delivered")

    assert (first.status_code, second.status_code) == (200, 200)
    assert web.status_of(sid)["delivery_status"] == "delivered"
    assert outcome_count("duplicate") == duplicates + 1


def test_a_failure_records_its_error_code_and_is_terminal(web: Web) -> None:
    """undelivered with ErrorCode 63016: stored on the message, counted by code; a later
    delivered does not revive it."""
    sid = web.reply()
    failures = sample("wa_sessions_delivery_failures_total", {"error_code": "63016"})

    web.callback(sid, "sent")
    web.callback(sid, "undelivered", ErrorCode="63016")
    web.callback(sid, "delivered")

    metadata = web.status_of(sid)
    assert (metadata["delivery_status"], metadata["error_code"]) == ("undelivered", "63016")
    assert sample("wa_sessions_delivery_failures_total", {"error_code": "63016"}) == failures + 1


def test_each_reply_keeps_its_own_status(web: Web) -> None:
    """Two replies in one session: callbacks update the one they name."""
    first = web.reply("3 boxes of apples")
    second = web.reply("2 x Margherita pizza")

    web.callback(first, "read")
    web.callback(second, "failed", ErrorCode="21211")

    assert web.status_of(first)["delivery_status"] == "read"
    assert web.status_of(second)["delivery_status"] == "failed"
    assert "error_code" not in web.status_of(first)


def test_a_forged_callback_is_refused(web: Web) -> None:
    """Signed with another token: 403 with a JSON error, nothing stored."""
    sid = web.reply()
    forged = outcome_count("bad_signature")

    response = web.post(callback_form(sid, "read"), token="not-the-token")
    unsigned = web.client.post(
        STATUS,
        content=urlencode(callback_form(sid, "read")),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    assert unsigned.status_code == 403
    assert web.status_of(sid)["delivery_status"] == "queued"
    assert outcome_count("bad_signature") == forged + 2


def test_a_callback_for_another_account_is_refused(web: Web) -> None:
    """Correctly signed but for another AccountSid: refused like the inbound webhook."""
    sid = web.reply()

    response = web.callback(sid, "read", AccountSid="AC" + "9" * 32)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "unknown_account"


def test_an_unknown_sid_is_answered_200_and_counted(web: Web) -> None:
    """A MessageSid we never sent: 200 (Twilio must not retry), counted as unknown_sid."""
    unknown = outcome_count("unknown_sid")

    response = web.callback(new_sid(), "delivered")

    assert response.status_code == 200
    assert outcome_count("unknown_sid") == unknown + 1


def test_a_callback_that_beats_the_commit_of_its_reply_is_applied_at_commit(web: Web) -> None:
    """Twilio can call back before the drain has recorded the reply: the status is kept and
    the reply is stored with it."""
    sid = new_sid()
    web.sender.sids.append(sid)

    early = web.callback(sid, "sent")
    assert web.reply() == sid

    assert early.status_code == 200
    assert web.status_of(sid)["delivery_status"] == "sent"


def test_callbacks_between_twilio_accepting_a_reply_and_its_commit_are_applied_at_commit(
    web: Web, redis_client: redis.Redis
) -> None:
    """The real race: Twilio calls back (``delivered``, then a late ``sent``) while the drain
    that sent the reply has not committed it. Both are answered 200 and kept, for a day at
    most; the commit stores the reply with the furthest status, and a later ``read`` applies
    to the stored reply."""
    unknown, stale = outcome_count("unknown_sid"), outcome_count("stale")
    early: list[tuple[int, int, int]] = []

    def twilio_calls_back(sid: str) -> None:
        for status in ("delivered", "sent"):
            response = web.callback(sid, status)
            ttl_ms = redis_client.pttl(web.service.store.keys.outbound(sid))
            early.append((response.status_code, len(web.outbound()), ttl_ms))

    web.sender.on_accepted = twilio_calls_back
    sid = web.reply()

    assert [(code, stored) for code, stored, _ in early] == [(200, 0), (200, 0)]
    assert all(0 < ttl_ms <= UNMAPPED_TTL_SECONDS * 1000 for _, _, ttl_ms in early)
    # ``delivered`` is kept for the commit; the late ``sent`` is already behind it.
    assert (outcome_count("unknown_sid"), outcome_count("stale")) == (unknown + 1, stale + 1)
    metadata = web.status_of(sid)
    assert metadata["delivery_status"] == "delivered"
    assert "delivery_updated_at" in metadata
    assert web.callback(sid, "read").status_code == 200
    assert web.status_of(sid)["delivery_status"] == "read"


@pytest.mark.parametrize(
    "fields",
    [
        {"MessageStatus": "read"},
        {"MessageSid": "SMnot-a-sid", "MessageStatus": "read"},
        {"MessageSid": "SM" + "a" * 32},
        {"MessageSid": "SM" + "a" * 32, "MessageStatus": "<script>"},
        {"MessageSid": "SM" + "a" * 32, "MessageStatus": "read", "AccountSid": "AC-not-a-sid"},
        {"MessageSid": "SM" + "a" * 32, "MessageStatus": "read", "AccountSid": ""},
    ],
)
def test_malformed_callbacks_are_400(web: Web, fields: dict[str, str]) -> None:
    """A missing or malformed MessageSid, MessageStatus or AccountSid is a JSON 400."""
    response = web.post({"AccountSid": ACCOUNT, **fields})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_a_callback_with_a_repeated_field_is_a_400_naming_it(web: Web) -> None:
    """Signed over both values (Twilio's scheme sorts them), a second MessageStatus could
    otherwise move a reply to ``read``: refused like the inbound webhook, nothing applied."""
    sid = web.reply()
    pairs = [*callback_form(sid, "sent").items(), ("MessageStatus", "read")]
    signature = sign_pairs(TOKEN, BASE + STATUS, pairs)
    assert signature == sign_pairs(TOKEN, BASE + STATUS, pairs[::-1])
    before = outcome_count("bad_request")
    response = web.client.post(
        STATUS,
        content=urlencode(pairs),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "bad_request",
        "message": "form field 'MessageStatus' appears more than once",
    }
    assert outcome_count("bad_request") == before + 1
    assert web.service.store.outbound(sid).get("status") != "read"
