"""The HTTP layer through the ASGI test client, on a real SessionService and Inbox over Redis.

Webhooks are signed with the twilio SDK's own ``RequestValidator``; drain wake-ups are read back
from the Dramatiq queue the ingest script writes them to (under a namespace of the tests' own).
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import dramatiq
import httpx
import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from twilio.request_validator import RequestValidator

from tests.conftest import FakeClock
from tests.signing import sign_pairs
from wa_sessions import bootstrap
from wa_sessions.archive.reader import ArchiveReader
from wa_sessions.config import Settings
from wa_sessions.statemachine import MessageDirection, SessionService
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.inbox import AsyncInbox, InboxPolicy
from wa_sessions.statemachine.steps import IngestOutcome
from wa_sessions.webhook import WebDeps, create_app
from wa_sessions.workers.actors import DRAIN_CONVERSATION
from wa_sessions.workers.broker import DrainWakeMessages
from wa_sessions.workers.queues import QueueKeys

TOKEN = "test-token"
ADMIN = {"Authorization": "Bearer admin"}
BASE = "https://example.test"
WEBHOOK = "/twilio-webhook-opt"
URL = BASE + WEBHOOK
PHONE = "+14155550100"
OTHER = "+14155550101"
BUSINESS = "+14155238886"
CONV = f"{PHONE}|{BUSINESS}"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
#: Where the webhook's ingest script enqueues drain wake-ups in these tests.
WAKES = QueueKeys(namespace="test-webhook")


def wake_messages() -> DrainWakeMessages:
    return DrainWakeMessages(WAKES, DRAIN_CONVERSATION)


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


def make_settings(**overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "environment": "development",
        "twilio_auth_token": TOKEN,
        "admin_token": "admin",
        "public_base_url": BASE,
        "business_number": BUSINESS,
        "max_body_bytes": 4096,
    }
    options.update(overrides)
    return _ExplicitSettings(**options)


@dataclass
class Web:
    client: TestClient
    service: SessionService
    inbox: AsyncInbox
    #: The test's own client on the test Redis (the service's may point at a dead one).
    queue_client: redis.Redis

    @property
    def wakes(self) -> list[str]:
        """The conversations whose drain wake-up waits in the queue, in enqueue order."""
        client = self.queue_client
        ids = client.lrange(WAKES.ready, 0, -1)
        return [
            dramatiq.Message.decode(str(client.hget(WAKES.messages, i)).encode()).args[0]
            for i in ids
        ]

    def inbox_entries(self, conv: str = CONV) -> list[str]:
        store = self.service.store
        return [str(e) for e in store.client.lrange(store.keys.conv_inbox(conv), 0, -1)]

    def post(
        self,
        fields: dict[str, str],
        *,
        url: str = URL,
        token: str = TOKEN,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        signature = RequestValidator(token).compute_signature(url, fields)
        return self.client.post(
            WEBHOOK,
            content=urlencode(fields),
            headers={**FORM, "X-Twilio-Signature": signature, **(headers or {})},
        )


MakeWeb = Callable[..., Web]
Wake = Callable[[str], Awaitable[None]]


@pytest.fixture
def make_web(redis_client: redis.Redis, redis_url: str, clock: FakeClock) -> Iterator[MakeWeb]:
    """Builds an app on the test Redis; keyword arguments override settings or the inbox.
    Each TestClient runs one event loop for all its requests, as uvicorn does."""
    clients: list[TestClient] = []

    def make(
        *,
        client: redis.Redis | None = None,
        async_url: str | None = None,
        inbox_policy: InboxPolicy | None = None,
        inbox: AsyncInbox | None = None,
        archive: ArchiveReader | None = None,
        **settings: Any,
    ) -> Web:
        service = SessionService(client or redis_client, business_number=BUSINESS, clock=clock)
        async_client = redis.asyncio.Redis.from_url(
            async_url or redis_url, socket_connect_timeout=0.5, retry=AsyncRetry(NoBackoff(), 0)
        )
        inbox = inbox or AsyncInbox(
            async_client,
            service.store.keys,
            inbox_policy or InboxPolicy(),
            wake_message=wake_messages(),
        )
        app = create_app(
            WebDeps(
                settings=make_settings(**settings), service=service, inbox=inbox, archive=archive
            )
        )
        test_client = TestClient(app)
        test_client.__enter__()
        clients.append(test_client)
        return Web(test_client, service, inbox, redis_client)

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


@pytest.fixture
def web(make_web: MakeWeb) -> Web:
    return make_web()


def inbound(
    phone: str = PHONE, body: str = "I need 5 units of Product A", **extra: str
) -> dict[str, str]:
    fields = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": f"whatsapp:{phone}",
        "To": f"whatsapp:{BUSINESS}",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "ProfileName": "Ada",
        "WaId": phone[1:],
        "MessageType": "text",
    }
    fields.update(extra)
    return fields


def outcome_count(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "wa_sessions_webhook_requests_total", {"endpoint": "inbound", "outcome": outcome}
    )
    return value or 0.0


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return str(body["error"]["code"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_redis() -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=closed_port(),
        decode_responses=True,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


def seed(service: SessionService, phone: str, *contents: str) -> str:
    session = None
    for content in contents:
        session = service.add_message(phone, content)
    assert session is not None
    return session.session_id


# ---- webhook --------------------------------------------------------------------------------


def test_signed_message_is_queued_in_its_conversation_inbox_and_answered_with_twiml(
    web: Web,
) -> None:
    """200 with empty TwiML as text/xml; the message waits in the inbox; a drain is woken."""
    fields = inbound()
    before = outcome_count("accepted")
    response = web.post(fields)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    entries = web.inbox_entries()
    assert len(entries) == 1
    assert web.service.store.inbox_depth(CONV) == 1
    message = Message.model_validate_json(entries[0].split("\t", 4)[4])
    assert message.id == fields["MessageSid"]
    assert message.content == "I need 5 units of Product A"
    assert message.direction is MessageDirection.INBOUND
    assert message.metadata["profile_name"] == "Ada"
    assert web.wakes == [CONV]
    assert outcome_count("accepted") == before + 1


def test_second_message_in_a_row_finds_the_drain_already_woken(web: Web) -> None:
    """Two messages queue in order and wake the conversation's drain only once."""
    assert web.post(inbound(body="one")).status_code == 200
    assert web.post(inbound(body="two")).status_code == 200
    contents = [json.loads(e.split("\t", 4)[4])["content"] for e in web.inbox_entries()]
    assert contents == ["one", "two"]
    assert web.wakes == [CONV]


def test_redelivered_message_sid_is_stored_once_and_answered_200(web: Web) -> None:
    """Twilio's retry of the same MessageSid is a duplicate: 200, stored once, no wake."""
    fields = inbound()
    before = outcome_count("duplicate")
    assert web.post(fields).status_code == 200
    again = web.post(fields)
    assert again.status_code == 200
    assert again.text.endswith("<Response/>")
    assert len(web.inbox_entries()) == 1
    assert web.wakes == [CONV]
    assert outcome_count("duplicate") == before + 1


@pytest.mark.parametrize("days_later", [8, 29])
def test_a_replay_after_the_old_seven_day_window_is_still_a_duplicate(
    make_web: MakeWeb, clock: FakeClock, days_later: int
) -> None:
    """Twilio's signature has no timestamp: a captured request replayed days later, past the
    7 days markers used to be kept, is refused and counted as a duplicate while the service
    still holds the message (the production policy: the settings' defaults)."""
    web = make_web(inbox_policy=bootstrap.inbox_policy(make_settings()))
    fields = inbound()
    assert web.post(fields).status_code == 200
    clock.advance(days=days_later)
    before = outcome_count("duplicate")
    replay = web.post(fields)
    assert replay.status_code == 200
    assert replay.text.endswith("<Response/>")
    assert outcome_count("duplicate") == before + 1
    assert len(web.inbox_entries()) == 1


def test_media_message_is_queued_with_its_media(web: Web) -> None:
    """An image message keeps its media URLs and content types."""
    fields = inbound(
        body="",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/m/1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/m/2",
        MediaContentType1="image/png",
    )
    assert web.post(fields).status_code == 200
    message = json.loads(web.inbox_entries()[0].split("\t", 4)[4])
    assert message["message_type"] == "image"
    assert [m["content_type"] for m in message["metadata"]["media"]] == ["image/jpeg", "image/png"]


def test_forged_or_unsigned_webhooks_are_refused_and_store_nothing(
    web: Web, redis_client: redis.Redis
) -> None:
    """A wrong token, a tampered field, another URL or no signature: 403, nothing in Redis."""
    before = outcome_count("bad_signature")
    fields = inbound()
    good = RequestValidator(TOKEN).compute_signature(URL, fields)
    tampered = {**fields, "Body": "I need 500 units"}
    responses = [
        web.post(fields, token="stolen-token"),
        web.post(fields, url="https://attacker.test" + WEBHOOK),
        web.client.post(
            WEBHOOK, content=urlencode(tampered), headers={**FORM, "X-Twilio-Signature": good}
        ),
        web.client.post(WEBHOOK, content=urlencode(fields), headers=FORM),
        web.client.post(
            WEBHOOK, content=urlencode(fields), headers={**FORM, "X-Twilio-Signature": ""}
        ),
    ]
    assert [r.status_code for r in responses] == [403] * 5
    assert {error_code(r) for r in responses} == {"invalid_signature"}
    assert redis_client.keys("*") == []
    assert web.wakes == []
    assert outcome_count("bad_signature") == before + 5


def test_sha256_signature_is_accepted_when_the_settings_header_names_it(web: Web) -> None:
    """``X-Twilio-Webhooks-Signature-Settings`` selects HMAC-SHA256."""
    fields = inbound()
    signature = RequestValidator(TOKEN).compute_signature(URL, fields, algorithm="HMAC_SHA256")
    response = web.client.post(
        WEBHOOK,
        content=urlencode(fields),
        headers={
            **FORM,
            "X-Twilio-Signature": signature,
            "X-Twilio-Webhooks-Signature-Settings": "key=k1,algorithm=HMAC_SHA256",
        },
    )
    assert response.status_code == 200


def test_forwarded_headers_rebuild_the_signed_url_only_when_trusted(make_web: MakeWeb) -> None:
    """Without a public base URL, a trusted proxy's X-Forwarded-* name the URL Twilio signed;
    the deprecated TRUST_PROXY_HEADERS=true still means one proxy."""
    fields = inbound()
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.test"}
    url = "https://hooks.example.test" + WEBHOOK
    trusted = make_web(public_base_url="", forwarded_proxy_count=1)
    deprecated = make_web(public_base_url="", trust_proxy_headers=True)
    untrusted = make_web(public_base_url="")
    assert untrusted.post(fields, url=url, headers=proxied).status_code == 403
    assert trusted.post(fields, url=url, headers=proxied).status_code == 200
    assert deprecated.post(inbound(), url=url, headers=proxied).status_code == 200
    # Without either, the URL the server saw is what must have been signed.
    assert untrusted.post(inbound(), url="http://testserver" + WEBHOOK).status_code == 200


def test_a_forged_host_header_does_not_make_a_signature_valid(make_web: MakeWeb) -> None:
    """With PUBLIC_BASE_URL (required outside development) the request's Host names nothing: a
    request signed for the host an attacker controls, sent with that Host, is refused."""
    web = make_web(public_base_url=BASE)
    forged_url = "http://evil.test" + WEBHOOK
    before = outcome_count("bad_signature")
    response = web.post(inbound(), url=forged_url, headers={"Host": "evil.test"})
    assert response.status_code == 403
    assert error_code(response) == "invalid_signature"
    assert outcome_count("bad_signature") == before + 1
    assert web.inbox_entries() == []
    assert web.post(inbound(), headers={"Host": "evil.test"}).status_code == 200


@pytest.mark.parametrize(
    "forwarded",
    [
        [("X-Forwarded-Proto", "https, https"), ("X-Forwarded-Host", "evil.test, hooks.test")],
        [
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.test"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "hooks.test"),
        ],
    ],
    ids=["appended", "own-line"],
)
def test_a_forged_leftmost_x_forwarded_host_does_not_make_a_signature_valid(
    make_web: MakeWeb, forwarded: list[tuple[str, str]]
) -> None:
    """Behind one proxy, the client's own X-Forwarded-Host entry (left of the one the proxy
    appends, in the same line or a line of its own) is never the signed URL; the proxy's is."""
    web = make_web(public_base_url="", forwarded_proxy_count=1)

    def post(signed_for: str) -> httpx.Response:
        fields = inbound()
        signature = RequestValidator(TOKEN).compute_signature(signed_for + WEBHOOK, fields)
        headers = [*FORM.items(), ("X-Twilio-Signature", signature), *forwarded]
        return web.client.post(WEBHOOK, content=urlencode(fields), headers=httpx.Headers(headers))

    assert post("https://evil.test").status_code == 403
    assert web.inbox_entries() == []
    assert post("https://hooks.test").status_code == 200


def test_webhook_for_another_account_is_refused(make_web: MakeWeb) -> None:
    """With TWILIO_ACCOUNT_SID set, a correctly signed request for another account is 403."""
    web = make_web(twilio_account_sid="AC" + "1" * 32)
    response = web.post(inbound())
    assert response.status_code == 403
    assert error_code(response) == "unknown_account"
    assert web.inbox_entries() == []


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"NumMedia": "many"}, "NumMedia"),
        ({"NumMedia": "11"}, "NumMedia"),
        ({"MessageSid": "SM123"}, "MessageSid"),
        ({"From": ""}, "From"),
        ({"From": "whatsapp:not-a-number"}, "From"),
        ({"Latitude": "north", "Longitude": "1"}, "Latitude"),
        ({"AccountSid": "AC" + "0" * 31}, "AccountSid"),
        ({"AccountSid": "MG" + "0" * 32}, "AccountSid"),
        ({"AccountSid": ""}, "AccountSid"),
    ],
)
def test_malformed_webhook_is_a_400_json_error_naming_the_field(
    web: Web, change: dict[str, str], field_name: str
) -> None:
    """A signed but malformed message is refused with the field's name, nothing stored."""
    before = outcome_count("bad_request")
    response = web.post(inbound(**change))
    assert response.status_code == 400
    assert error_code(response) == "bad_request"
    assert field_name in response.json()["error"]["message"]
    assert web.inbox_entries() == []
    assert outcome_count("bad_request") == before + 1


def test_missing_to_is_a_400(web: Web) -> None:
    """To is required: it names the business number of the conversation."""
    fields = inbound()
    del fields["To"]
    response = web.post(fields)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "To is missing"


def test_a_signed_webhook_without_account_sid_is_a_400(web: Web) -> None:
    """Twilio names its account in every request it signs."""
    fields = inbound()
    del fields["AccountSid"]
    response = web.post(fields)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "AccountSid is missing"
    assert web.inbox_entries() == []


def post_pairs(web: Web, pairs: list[tuple[str, str]]) -> httpx.Response:
    """Posts form fields in the given order, repeated names kept, signed as the twilio SDK
    signs a multi-valued form (sorted, de-duplicated values per name)."""
    signature = sign_pairs(TOKEN, URL, pairs)
    return web.client.post(
        WEBHOOK, content=urlencode(pairs), headers={**FORM, "X-Twilio-Signature": signature}
    )


def test_a_correctly_signed_webhook_with_a_repeated_field_is_a_400_naming_it(web: Web) -> None:
    """The signature holds over a repeated Body in either order (values are sorted before
    signing), so which one is first is the sender's choice: refused, counted, nothing stored."""
    before = outcome_count("bad_request")
    fields = inbound()
    pairs = [*fields.items(), ("Body", "I need 500 units of Product A")]
    responses = [post_pairs(web, pairs), post_pairs(web, pairs[::-1])]
    assert [r.status_code for r in responses] == [400, 400]
    assert {error_code(r) for r in responses} == {"bad_request"}
    assert {r.json()["error"]["message"] for r in responses} == {
        "form field 'Body' appears more than once"
    }
    assert web.inbox_entries() == []
    assert web.wakes == []
    assert outcome_count("bad_request") == before + 2
    assert web.post(fields).status_code == 200


def test_undecodable_body_is_a_400(web: Web) -> None:
    """A body that is not UTF-8 form encoding is refused before anything else."""
    response = web.client.post(
        WEBHOOK, content=b"Body=%ff", headers={**FORM, "X-Twilio-Signature": "x"}
    )
    assert response.status_code == 400
    assert error_code(response) == "bad_request"


def test_oversized_body_is_refused_with_413_declared_or_streamed(
    web: Web, redis_client: redis.Redis
) -> None:
    """Over MAX_BODY_BYTES: refused from Content-Length, and also when sent chunked."""
    before = outcome_count("too_large")
    fields = inbound(body="x" * 5000)
    declared = web.post(fields)
    assert declared.status_code == 413
    assert error_code(declared) == "payload_too_large"
    signature = RequestValidator(TOKEN).compute_signature(URL, fields)
    payload = urlencode(fields).encode()
    chunks = (payload[i : i + 1000] for i in range(0, len(payload), 1000))
    streamed = web.client.post(
        WEBHOOK, content=chunks, headers={**FORM, "X-Twilio-Signature": signature}
    )
    assert streamed.status_code == 413
    assert redis_client.keys("*") == []
    assert outcome_count("too_large") == before + 2


def test_full_inbox_is_a_429(make_web: MakeWeb) -> None:
    """A conversation whose inbox is at its cap refuses more with ``inbox_full``."""
    web = make_web(inbox_policy=InboxPolicy(max_depth=1))
    assert web.post(inbound(body="one")).status_code == 200
    response = web.post(inbound(body="two"))
    assert response.status_code == 429
    assert error_code(response) == "inbox_full"
    assert len(web.inbox_entries()) == 1


def test_a_phone_over_its_rate_gets_429_while_another_is_served_until_the_minute_passes(
    make_web: MakeWeb, clock: FakeClock
) -> None:
    """INGEST_MESSAGES_PER_MINUTE=3: the phone's 4th message within the minute is refused with
    a JSON 429 ``rate_limited`` (counted), stored nowhere and not marked seen, while another
    phone is served and a retry of an accepted message is still a duplicate; the minute over,
    the phone is accepted again, the refused message included."""
    web = make_web(inbox_policy=bootstrap.inbox_policy(make_settings(ingest_messages_per_minute=3)))
    limited, accepted = outcome_count("rate_limited"), outcome_count("accepted")
    first = [inbound(body=f"m{n}") for n in range(3)]
    assert [web.post(fields).status_code for fields in first] == [200] * 3
    over = inbound(body="m3")
    refused = web.post(over)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"] == {
        "code": "rate_limited",
        "message": "this conversation sent more than 3 messages in a minute; retry later",
    }
    assert outcome_count("rate_limited") == limited + 1
    assert web.post(first[0]).status_code == 200  # Twilio's retry: a duplicate, as before
    assert web.post(inbound(OTHER, body="other phone")).status_code == 200
    assert len(web.inbox_entries()) == 3
    assert len(web.inbox_entries(f"{OTHER}|{BUSINESS}")) == 1

    clock.advance(seconds=19)
    assert web.post(over).status_code == 429
    clock.advance(seconds=1)  # one message every 20 s once the burst is spent
    assert web.post(over).status_code == 200
    assert web.post(inbound(body="m4")).status_code == 429
    clock.advance(seconds=60)
    assert [web.post(inbound(body=f"n{n}")).status_code for n in range(4)] == [200] * 3 + [429]
    contents = [json.loads(e.split("\t", 4)[4])["content"] for e in web.inbox_entries()]
    assert contents == ["m0", "m1", "m2", "m3", "n0", "n1", "n2"]
    assert outcome_count("accepted") == accepted + 8
    assert outcome_count("rate_limited") == limited + 4


def test_no_rate_limit_when_ingest_messages_per_minute_is_zero(make_web: MakeWeb) -> None:
    """0 turns the limit off: a hundred messages in the same instant are all accepted."""
    web = make_web(inbox_policy=bootstrap.inbox_policy(make_settings(ingest_messages_per_minute=0)))
    assert {web.post(inbound(body=f"m{n}")).status_code for n in range(100)} == {200}
    assert len(web.inbox_entries()) == 100


def test_redis_down_is_a_503_so_twilio_retries(make_web: MakeWeb) -> None:
    """With Redis unreachable the webhook, the API and the health check answer 503."""
    down = unreachable_redis()
    port = down.get_connection_kwargs()["port"]
    web = make_web(client=down, async_url=f"redis://127.0.0.1:{port}/0")
    before = outcome_count("unavailable")
    response = web.post(inbound())
    assert response.status_code == 503
    assert error_code(response) == "unavailable"
    assert outcome_count("unavailable") == before + 1
    assert web.wakes == []
    health = web.client.get("/healthz")
    assert health.status_code == 503
    assert error_code(health) == "unavailable"
    listing = web.client.get("/sessions/active", headers=ADMIN)
    assert listing.status_code == 503


def test_unexpected_error_is_a_500_without_details(
    make_web: MakeWeb, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug surfaces as ``internal_error``, counted as error; neither the body nor the log
    repeats the exception's message (it may quote a phone number)."""

    class BrokenInbox(AsyncInbox):
        async def accept(self, conv: str, message: Message, *, accepted_ms: int) -> IngestOutcome:
            raise RuntimeError(f"secret detail {conv}")

    service = SessionService(redis_client, business_number=BUSINESS)
    web = make_web(
        inbox=BrokenInbox(redis.asyncio.Redis(), service.store.keys, wake_message=wake_messages())
    )
    before = outcome_count("error")
    response = web.post(inbound())
    assert response.status_code == 500
    assert error_code(response) == "internal_error"
    assert "secret" not in response.text
    assert outcome_count("error") == before + 1
    assert "RuntimeError" in caplog.text
    assert PHONE not in caplog.text


# ---- session API ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/session/{PHONE}"),
        ("GET", "/sessions/active"),
        ("GET", "/sessions"),
        ("POST", f"/session/{uuid.uuid4()}/complete"),
        ("POST", f"/session/{uuid.uuid4()}/expire"),
        ("GET", f"/session/{uuid.uuid4()}/summary"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YWRtaW46YWRtaW4="}],
)
def test_session_api_needs_the_admin_bearer_token(
    web: Web, method: str, path: str, headers: dict[str, str]
) -> None:
    """Every API route is 401 with WWW-Authenticate: Bearer for a missing or wrong token."""
    response = web.client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert error_code(response) == "unauthorized"


def test_unset_admin_token_locks_the_api(make_web: MakeWeb) -> None:
    """No ADMIN_TOKEN configured means no token is right, not that none is needed."""
    web = make_web(admin_token="")
    assert web.client.get("/sessions", headers={"Authorization": "Bearer "}).status_code == 401
    assert web.client.get("/sessions").status_code == 401


def test_session_by_phone_has_the_design_documents_shape(web: Web, clock: FakeClock) -> None:
    """Session without messages plus counts, window and the last ``limit`` messages."""
    sid = seed(web.service, PHONE, "one", "two", "three")
    response = web.client.get(f"/session/{PHONE}", params={"limit": 2}, headers=ADMIN)
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"session", "conversation_history", "message_count"}
    session = data["session"]
    assert session["session_id"] == sid
    assert session["phone_number"] == PHONE
    assert session["status"] == "active"
    assert session["message_count"] == 3
    assert session["context"] == {}
    assert session["order_details"] is None
    assert session["window"]["open"] is True
    assert session["last_inbound_at"] is not None
    assert "messages" not in session
    assert [m["content"] for m in data["conversation_history"]] == ["two", "three"]
    assert data["message_count"] == 2


def test_session_by_phone_accepts_whatsapp_prefixed_and_business_number(web: Web) -> None:
    """The phone may be given as Twilio sends it; business_number selects the conversation."""
    seed(web.service, PHONE, "hello")
    prefixed = web.client.get(f"/session/whatsapp:{PHONE}", headers=ADMIN)
    assert prefixed.status_code == 200
    other_business = web.client.get(
        f"/session/{PHONE}", params={"business_number": "+14155238887"}, headers=ADMIN
    )
    assert other_business.status_code == 404


def test_session_by_phone_errors(web: Web) -> None:
    """Unknown phone 404; an invalid phone or limit 400 naming the problem."""
    unknown = web.client.get(f"/session/{OTHER}", headers=ADMIN)
    assert unknown.status_code == 404
    assert error_code(unknown) == "session_not_found"
    invalid = web.client.get("/session/abc", headers=ADMIN)
    assert invalid.status_code == 400
    assert error_code(invalid) == "invalid_phone_number"
    for limit in ("0", "1001", "ten"):
        response = web.client.get(f"/session/{PHONE}", params={"limit": limit}, headers=ADMIN)
        assert response.status_code == 400
        assert error_code(response) == "bad_request"
        assert response.json()["error"]["message"].startswith("limit:")


def test_active_sessions_are_paginated(web: Web, clock: FakeClock) -> None:
    """``/sessions/active`` pages through active sessions and reports the total."""
    sids = []
    for i in range(3):
        sids.append(seed(web.service, f"+1415555020{i}", "hi"))
        clock.advance(seconds=1)
    first = web.client.get("/sessions/active", params={"limit": 2}, headers=ADMIN).json()
    assert first["total_active"] == 3
    assert len(first["active_sessions"]) == 2
    rest = web.client.get(
        "/sessions/active", params={"offset": 2, "limit": 2}, headers=ADMIN
    ).json()
    seen = [s["session_id"] for s in first["active_sessions"] + rest["active_sessions"]]
    assert sorted(seen) == sorted(sids)
    assert rest["offset"] == 2
    bad = web.client.get("/sessions/active", params={"offset": -1}, headers=ADMIN)
    assert bad.status_code == 400
    assert "offset" in bad.json()["error"]["message"]


def test_sessions_listing_filters_by_status_and_pages(web: Web, clock: FakeClock) -> None:
    """``/sessions`` lists newest first with totals, filtered by status when asked."""
    a = seed(web.service, PHONE, "hi")
    clock.advance(seconds=1)
    b = seed(web.service, OTHER, "hi")
    web.service.complete_session(a)
    everything = web.client.get("/sessions", headers=ADMIN).json()
    assert [s["session_id"] for s in everything["sessions"]] == [b, a]
    assert (everything["total"], everything["offset"], everything["limit"]) == (2, 0, 50)
    completed = web.client.get("/sessions", params={"status": "completed"}, headers=ADMIN)
    assert [s["session_id"] for s in completed.json()["sessions"]] == [a]
    paged = web.client.get("/sessions", params={"offset": 1, "limit": 1}, headers=ADMIN).json()
    assert [s["session_id"] for s in paged["sessions"]] == [a]
    assert paged["total"] == 2
    bad = web.client.get("/sessions", params={"status": "lost"}, headers=ADMIN)
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("status:")


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        ("complete", "completed", "Session completed successfully"),
        ("expire", "expired", "Session expired successfully"),
    ],
)
def test_ending_a_session_then_ending_it_again_is_a_conflict(
    web: Web, action: str, status: str, message: str
) -> None:
    """complete/expire: 200 with the ended session, then 409 ``invalid_transition``."""
    sid = seed(web.service, PHONE, "hi")
    done = web.client.post(f"/session/{sid}/{action}", headers=ADMIN)
    assert done.status_code == 200
    assert done.json()["message"] == message
    assert done.json()["session"]["status"] == status
    assert done.json()["session"]["ended_at"] is not None
    again = web.client.post(f"/session/{sid}/{action}", headers=ADMIN)
    assert again.status_code == 409
    assert error_code(again) == "invalid_transition"


@pytest.mark.parametrize("action", ["complete", "expire"])
def test_ending_an_unknown_or_malformed_session_id(web: Web, action: str) -> None:
    """An unknown UUID is 404; anything that is not a UUID is 400 naming session_id."""
    unknown = web.client.post(f"/session/{uuid.uuid4()}/{action}", headers=ADMIN)
    assert unknown.status_code == 404
    assert error_code(unknown) == "session_not_found"
    for bad_id in ("not-a-uuid", "..%2F..%2Fetc", "%2E%2E"):
        response = web.client.post(f"/session/{bad_id}/{action}", headers=ADMIN)
        assert response.status_code in (400, 404)
        error_code(response)
    malformed = web.client.post(f"/session/not-a-uuid/{action}", headers=ADMIN)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["message"].startswith("session_id:")


def test_session_summary(web: Web) -> None:
    """The summary counts messages by direction and type; unknown or bad ids are refused."""
    sid = seed(web.service, PHONE, "one", "two")
    web.service.add_message(PHONE, "reply", direction=MessageDirection.OUTBOUND)
    response = web.client.get(f"/session/{sid}/summary", headers=ADMIN)
    assert response.status_code == 200
    summary = response.json()
    assert summary["session_id"] == sid
    assert summary["message_count"] == 3
    assert summary["messages_by_direction"] == {"inbound": 2, "outbound": 1}
    assert summary["window"]["open"] is True
    assert web.client.get(f"/session/{uuid.uuid4()}/summary", headers=ADMIN).status_code == 404
    assert web.client.get("/session/nope/summary", headers=ADMIN).status_code == 400


# ---- operations -----------------------------------------------------------------------------


def test_healthz_pings_redis(web: Web) -> None:
    """Healthy when Redis answers; no token needed."""
    response = web.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_exposes_webhook_counters(web: Web) -> None:
    """``/metrics`` is the Prometheus exposition, including webhook outcomes."""
    web.post(inbound())
    response = web.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "wa_sessions_webhook_requests_total" in response.text


def test_api_requests_are_counted_by_route_template_not_by_value(web: Web) -> None:
    """The route label is the template: no phone number ever becomes a label value."""
    web.client.get(f"/session/{PHONE}", headers=ADMIN)
    text = web.client.get("/metrics").text
    assert 'route="/session/{phone_number}",status="4xx"' in text
    assert PHONE not in text


def test_openapi_documents_every_path(web: Web) -> None:
    """``/openapi.json`` lists the webhook, the session API and health, with error bodies."""
    schema = web.client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {
        WEBHOOK,
        "/session/{phone_number}",
        "/sessions/active",
        "/sessions",
        "/session/{session_id}/complete",
        "/session/{session_id}/expire",
        "/session/{session_id}/summary",
        "/healthz",
        "/metrics",
    }
    get_session = schema["paths"]["/session/{phone_number}"]["get"]
    assert "422" not in get_session["responses"]
    assert "SessionDetail" in json.dumps(get_session["responses"]["200"])
    webhook = schema["paths"][WEBHOOK]["post"]
    assert "application/x-www-form-urlencoded" in webhook["requestBody"]["content"]
    assert "bearer" in json.dumps(schema["components"]["securitySchemes"]).lower()


def test_unknown_route_and_wrong_method_are_json_errors(web: Web) -> None:
    """Even the router's own refusals use the error body."""
    missing = web.client.get("/nowhere")
    assert missing.status_code == 404
    assert error_code(missing) == "not_found"
    wrong = web.client.get(WEBHOOK)
    assert wrong.status_code == 405
    assert error_code(wrong) == "method_not_allowed"


def test_web_deps_refuse_a_webhook_that_could_not_wake_a_drain(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """The inbox must enqueue wake-ups itself (its ``wake_message``), or accepted messages
    would wait for the re-drive pass."""
    service = SessionService(redis_client, business_number=BUSINESS)
    inbox = AsyncInbox(redis.asyncio.Redis.from_url(redis_url), service.store.keys)
    with pytest.raises(ValueError, match="wake-ups"):
        WebDeps(settings=make_settings(), service=service, inbox=inbox)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_assets_served_by_the_app(web: Web, page: str) -> None:
    """Swagger UI and ReDoc reference no CDN (nor Google Fonts): every script, stylesheet and
    icon they name is a path on this app, and each is served."""
    html = web.client.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    urls += re.findall(r"""url: *["']([^"']+)["']""", html.text)
    assert urls
    assert [u for u in urls if "//" in u] == []
    for url in urls:
        asset = web.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
