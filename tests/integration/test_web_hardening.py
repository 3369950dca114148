"""What the app answers besides Twilio's POSTs: security headers on every response, a page's
own Content-Security-Policy where it needs one, and ``/metrics`` behind ``METRICS_TOKEN``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.responses import HTMLResponse

from tests.integration.test_webhook import ADMIN, WEBHOOK, MakeWeb, Web, error_code, inbound
from wa_sessions.security_headers import STRICT_CSP

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
METRICS_TOKEN = "metrics-token-of-the-test"


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


def inline_hash(html: str, tag: str) -> str:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
    assert match is not None, f"no inline <{tag}>"
    digest = hashlib.sha256(match.group(1).encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def api_errors(code: str) -> float:
    return REGISTRY.get_sample_value("wa_sessions_api_errors_total", {"code": code}) or 0.0


def test_every_json_answer_carries_the_security_headers_and_the_strict_policy(web: Web) -> None:
    """Health, metrics, the OpenAPI document, a vendored asset, and the refusals (401, 404,
    405): no sniffing, no framing, no referrer, ``default-src 'none'``. Twilio's POSTs are
    answered ahead of the middleware, as before: their TwiML carries none of it."""
    answers = {
        "healthz": web.client.get("/healthz"),
        "metrics": web.client.get("/metrics"),
        "openapi": web.client.get("/openapi.json"),
        "asset": web.client.get("/static/docs/swagger-ui/swagger-ui.css"),
        "401": web.client.get("/sessions"),
        "404": web.client.get("/nowhere"),
        "405": web.client.get(WEBHOOK),
        "session": web.client.get("/sessions", headers=ADMIN),
    }
    for what, response in answers.items():
        assert response.status_code in (200, 401, 404, 405), what
        for name, value in SECURITY.items():
            assert response.headers[name] == value, (what, name)
        assert response.headers["content-security-policy"] == STRICT_CSP, what
    twiml = web.post(inbound())
    assert twiml.status_code == 200
    assert "content-security-policy" not in twiml.headers


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect", "/redoc"])
def test_the_docs_pages_allow_their_own_assets_and_inline_code_by_hash_only(
    web: Web, path: str
) -> None:
    """Each documentation page says which scripts may run: the vendored files (``'self'``)
    and its own inline script by hash, never ``'unsafe-inline'`` or ``'unsafe-eval'``
    for scripts; nothing else loads by default, and the page cannot be framed."""
    response = web.client.get(path)
    assert response.status_code == 200
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["script-src"][0] == "'self'"
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*"} & set(policy["script-src"])
    assert response.headers["x-frame-options"] == "DENY"
    if path != "/redoc":
        assert inline_hash(response.text, "script") in policy["script-src"]
    else:
        # ReDoc inserts its styles as it renders and searches in a blob: worker.
        assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
        assert policy["worker-src"] == ["blob:"]


def test_a_page_that_sets_its_own_policy_keeps_it_and_gets_the_other_headers(
    web: Web,
) -> None:
    """How a future console under ``/console`` serves its pages: the route's own
    Content-Security-Policy wins over the JSON default; the other headers are still added."""
    own = "default-src 'self'; frame-ancestors 'none'"

    @web.client.app.get("/console/page")  # type: ignore[attr-defined, untyped-decorator]
    def page() -> HTMLResponse:
        return HTMLResponse("<p>console</p>", headers={"Content-Security-Policy": own})

    response = web.client.get("/console/page")
    assert response.status_code == 200
    assert response.headers.get_list("content-security-policy") == [own]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_metrics_needs_the_bearer_token_when_one_is_set(
    make_web: MakeWeb,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``METRICS_TOKEN``: no token, a wrong one, another scheme or the admin token are
    refused 401 with the JSON ``unauthorized`` error and counted; the token (compared with
    ``hmac.compare_digest``) gets the exposition. Without it, ``/metrics`` stays public."""
    guarded = make_web(metrics_token=METRICS_TOKEN)
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    before = api_errors("unauthorized")
    wrong = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": METRICS_TOKEN},
        ADMIN,
    ]
    for headers in wrong:
        response = guarded.client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert error_code(response) == "unauthorized"
        assert "wa_sessions_" not in response.text
    assert api_errors("unauthorized") == before + len(wrong)
    assert (b"wrong", METRICS_TOKEN.encode()) in calls

    allowed = guarded.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert allowed.status_code == 200
    assert "wa_sessions_api_errors_total" in allowed.text
    assert 'route="/metrics",status="4xx"' in allowed.text

    public = make_web()
    assert public.client.get("/metrics").status_code == 200


def test_the_metrics_token_is_documented_in_the_openapi_schema(
    make_web: MakeWeb,
) -> None:
    """Set, the token is a security scheme of ``/metrics`` with its 401 answer."""
    schema = make_web(metrics_token=METRICS_TOKEN).client.get("/openapi.json").json()
    metrics = schema["paths"]["/metrics"]["get"]
    assert metrics["security"] == [{"MetricsToken": []}]
    assert "401" in metrics["responses"]
