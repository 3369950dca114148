"""Who may read conversations, and what the service lets slip: every session route (found by
walking the app, so a new route is covered the day it is added) refuses a missing or wrong
token, tokens are compared in constant time, and no log line or metric of the running service
carries a customer's number, what they wrote, or a secret."""

from __future__ import annotations

import base64
import hmac
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.routing import iter_route_contexts

from tests.e2e.conftest import ADMIN_TOKEN, AUTH_TOKEN, Service
from tests.fake_apis import OPENAI_KEY, FakeOpenAI, FakeTwilio, Reply, fake_openai, fake_twilio
from tests.reliability.harness import FUZZ_ADMIN_TOKEN as ADMIN
from tests.reliability.harness import (
    FUZZ_TWILIO_TOKEN,
    KEYS,
    Poster,
    Web,
    address_forms,
    assert_json_error,
    conv_key,
    deadline_poll,
    leaks,
    log_files,
    phone,
    record,
    scrape,
    wait_applied,
)
from wa_sessions.redaction import redact

#: Routes anyone may call: Twilio's (signed instead), health, metrics and the API's own docs.
PUBLIC_ROUTES = {
    "/twilio-webhook-opt",
    "/twilio-status",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
#: The session API as the README documents it; the walk must find at least these.
DOCUMENTED = {
    ("GET", "/session/{phone_number}"),
    ("GET", "/sessions/active"),
    ("GET", "/sessions"),
    ("POST", "/session/{session_id}/complete"),
    ("POST", "/session/{session_id}/expire"),
    ("GET", "/session/{session_id}/summary"),
}
_PARAM_VALUES = {"phone_number": "+14155597200", "session_id": str(uuid.uuid4())}


def _wrong_credentials() -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(what, headers, query) for every way of not presenting the admin token."""
    basic = base64.b64encode(f"admin:{ADMIN}".encode()).decode()
    return [
        ("no header", {}, {}),
        ("wrong token", {"Authorization": "Bearer wrong"}, {}),
        ("empty token", {"Authorization": "Bearer "}, {}),
        ("prefix of the token", {"Authorization": f"Bearer {ADMIN[:-1]}"}, {}),
        ("token plus a byte", {"Authorization": f"Bearer {ADMIN}x"}, {}),
        ("token in other case", {"Authorization": f"Bearer {ADMIN.upper()}"}, {}),
        ("basic auth", {"Authorization": f"Basic {basic}"}, {}),
        ("other scheme", {"Authorization": f"Token {ADMIN}"}, {}),
        ("bare token", {"Authorization": ADMIN}, {}),
        ("token in the query", {}, {"token": ADMIN, "access_token": ADMIN}),
        ("token in a cookie", {"Cookie": f"token={ADMIN}; Authorization=Bearer%20{ADMIN}"}, {}),
        ("the Twilio token", {"Authorization": f"Bearer {FUZZ_TWILIO_TOKEN}"}, {}),
    ]


def _routes(web: Web) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, included routers resolved."""
    found = []
    for route in iter_route_contexts(web.app.routes):
        assert route.path is not None, route
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, route.path))
    return found


def _protected_routes(web: Web) -> list[tuple[str, str]]:
    return [(method, path) for method, path in _routes(web) if path not in PUBLIC_ROUTES]


def test_every_session_route_refuses_a_missing_or_wrong_token(web: Web) -> None:
    """Each non-public route of the app, with each of 12 wrong ways to authenticate: 401,
    ``WWW-Authenticate: Bearer``, the JSON ``unauthorized`` error; with the token, not 401."""
    routes = _protected_routes(web)
    assert set(routes) >= DOCUMENTED, routes
    refused = 0
    for method, template in routes:
        path = template.format(**_PARAM_VALUES)
        for what, headers, query in _wrong_credentials():
            response = web.client.request(method, path, headers=headers, params=query)
            assert response.status_code == 401, (method, template, what, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            body = assert_json_error(401, response.headers["content-type"], response.content)
            assert body["error"]["code"] == "unauthorized"
            refused += 1
        allowed = web.client.request(method, path, headers={"Authorization": f"Bearer {ADMIN}"})
        assert allowed.status_code != 401, (method, template)
    record("auth_refusals", routes=len(routes), refused=refused)


def test_public_routes_are_only_twilio_health_metrics_and_docs(web: Web) -> None:
    """A route added without the admin dependency would be public; this names the only ones
    that may be (Twilio's are signed, health and metrics hold no conversation data)."""
    unguarded = {
        path
        for method, path in _routes(web)
        if web.client.request(method, path.format(**_PARAM_VALUES)).status_code != 401
    }
    assert unguarded <= PUBLIC_ROUTES, unguarded - PUBLIC_ROUTES


def test_tokens_are_compared_with_hmac_compare_digest(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin token and the Twilio signature are checked with ``hmac.compare_digest`` (time
    independent of where the first differing byte is), never with ``==``."""
    calls: list[tuple[bytes | str, bytes | str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = web.client.get("/sessions", headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status_code == 401
    assert (b"wrong-token", ADMIN.encode()) in calls
    calls.clear()
    right = web.client.get("/sessions", headers={"Authorization": f"Bearer {ADMIN}"})
    assert right.status_code == 200
    assert (ADMIN.encode(), ADMIN.encode()) in calls
    calls.clear()
    forged = web.client.post(
        "/twilio-webhook-opt",
        content=b"MessageSid=SM00000000000000000000000000000000",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        },
    )
    assert forged.status_code == 403
    assert any(b == b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=" for _, b in calls), calls


def test_log_redaction_masks_numbers_and_user_ids_but_keeps_ordinary_text() -> None:
    """What the composition root installs in every process, on the line Dramatiq writes."""
    line = (
        "Failed to process message drain_conversation('+14155550123|+14155238886') "
        "with unhandled exception. user US.13491208655302741918 at 2026-11-26 00:41:37,664 "
        "took 1234567 ms on port 40511 (wa_sessions.workers.actors)"
    )
    masked = redact(line)
    assert "+14155550123" not in masked
    assert "+14155238886" not in masked
    assert "13491208655302741918" not in masked
    assert "drain_conversation('+14***23|+14***86')" in masked
    assert "2026-11-26 00:41:37,664" in masked
    assert "1234567 ms on port 40511 (wa_sessions.workers.actors)" in masked


# ---- the running service: logs and metrics -------------------------------------------------

ACCOUNT = "AC" + "0" * 32


@pytest.fixture
def apis() -> Iterator[tuple[FakeOpenAI, FakeTwilio]]:
    with fake_openai() as openai_api, fake_twilio(ACCOUNT, AUTH_TOKEN) as twilio_api:
        yield openai_api, twilio_api


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("external", [True, False], ids=["openai-twilio", "offline"])
def test_logs_and_metrics_never_reveal_numbers_texts_or_tokens(
    service_factory: Callable[..., Service],
    apis: tuple[FakeOpenAI, FakeTwilio],
    e2e_client: redis.Redis,
    external: bool,
) -> None:
    """Orders (through OpenAI and Twilio fakes, or offline: rules and the log sender), an
    OpenAI outage, a drain that fails and is retried by Dramatiq (which logs the failed message
    with its conversation key), forged and malformed webhooks, wrong tokens, API lookups by
    phone, the operators' script: then no log file and no ``/metrics`` line holds a customer's
    number in any form, a word they wrote, the admin token, the Twilio token or the OpenAI
    key."""
    openai_api, twilio_api = apis
    configured = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_api.api_url,
        "OPENAI_MODEL": "gpt-test",
        "OPENAI_TIMEOUT_SECONDS": "1",
        "OPENAI_RETRY_BUDGET_SECONDS": "3",
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_API_BASE_URL": twilio_api.base_url,
    }
    service = service_factory(**(configured if external else {})).start_all()
    sim = service.simulator()
    customers = [phone(500 + i) for i in range(5)]
    secrets_written: list[str] = []
    sent: dict[str, list[str]] = {}
    for i, customer in enumerate(customers):
        words = [f"Qx{uuid.uuid4().hex[:10]}" for _ in range(3)]
        secrets_written += words
        sent[customer] = [
            f"I need 2 units of {words[0]}",
            f"my name is {words[1]}",
            f"deliver to {words[2]} street",
        ]
        if i == 0:
            # OpenAI down for this phone's messages: failures noted and logged.
            openai_api.reply(*[Reply(503, {"error": {"message": "down"}})] * 9)
        for body in sent[customer]:
            assert sim.send(customer, body).status == 200
    wait_applied(e2e_client, sent, 60)

    # A drain that raises: the conversation's effects key holds the wrong type, so the drain
    # loop logs "drain of <conversation key> failed" with the traceback, and the re-drive pass
    # wakes the conversation again.
    broken = customers[1]
    effects_key = KEYS.conv_effects(conv_key(broken))
    e2e_client.set(effects_key, "not a list")
    secret = f"Qx{uuid.uuid4().hex[:10]}"
    secrets_written.append(secret)
    assert sim.send(broken, f"also {secret}").status == 200
    deadline_poll(lambda: "failed; the re-drive pass" in service.log("worker"), 30)
    e2e_client.delete(effects_key)
    wait_applied(e2e_client, {broken: [*sent[broken], f"also {secret}"]}, 30)

    # Refused and operator traffic.
    poster = Poster(service)
    try:
        bad_from = sim.inbound_form(customers[2], "x")
        bad_from["From"] = f"whatsapp:{customers[2]}#x"
        assert poster.post(bad_from).status == 400
        forged_body, headers = poster.signed(sim.inbound_form(customers[2], secrets_written[0]))
        headers["X-Twilio-Signature"] = "forged"
        assert poster.raw("POST", "/twilio-webhook-opt", forged_body, headers).status == 403
        assert poster.raw("GET", f"/session/{customers[3]}", None, {}).status == 401
        wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}-not"}
        assert poster.raw("GET", f"/session/{customers[3]}", None, wrong).status == 401
    finally:
        poster.close()
    for customer in customers:
        for form in ("{}", "whatsapp:{}"):
            assert sim.session(form.format(customer)).status == 200
    sid = sim.session(customers[4]).json()["session"]["session_id"]
    assert sim.request("GET", f"/session/{sid}/summary", admin=True).status == 200
    assert sim.request("GET", "/session/+1415559x", admin=True).status == 400
    expired = service.run_enqueue("expire", "--phone", customers[3], "--wait", "--timeout", "20")
    assert expired.returncode == 0, expired.stderr
    metrics_text = scrape(service)
    service.stop_all()  # every log flushed

    texts = {**log_files(service), "/metrics": metrics_text}
    secrets = [
        *(form for c in customers for form in address_forms(c)),
        *secrets_written,
        ADMIN_TOKEN,
        AUTH_TOKEN,
        OPENAI_KEY,
    ]
    found = leaks(texts, secrets)
    worker_log = texts["worker.log"]
    record(
        f"privacy_logs_metrics_{'external' if external else 'offline'}",
        log_bytes={name: len(text) for name, text in texts.items()},
        secrets_checked=len(secrets),
        found=found,
        drain_failures_logged=worker_log.count("failed; the re-drive pass"),
    )
    assert found == []
    # The failing drain was logged, with its conversation key masked.
    assert "drain of +14***" in worker_log
