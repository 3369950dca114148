"""Signing in and out of the console, the cookie's flags, CSRF, and refusals of unsigned
visitors: through the ASGI client on the test Redis."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from tests.console.conftest import ALICE_TOKEN, Console, MakeConsole
from tests.integration.test_webhook import make_settings
from wa_sessions.config import InsecureSettings, Settings


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_admin_token_signs_in_with_a_strict_httponly_secure_cookie(console: Console) -> None:
    """Sign-in redirects to the list with an HttpOnly, SameSite=Strict, Secure cookie."""
    answer = console.sign_in()
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("wa_console="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Secure" in cookie
    assert "Path=/console" in cookie
    page = console.client.get("/console/")
    assert page.status_code == 200
    assert "Signed in as <strong>admin</strong>" in page.text


def test_an_operator_token_signs_in_as_that_operator(console: Console) -> None:
    """OPERATOR_TOKENS' name:token pairs sign in as the named operator."""
    assert console.sign_in(ALICE_TOKEN).status_code == 303
    assert "Signed in as <strong>alice</strong>" in console.client.get("/console/").text


def test_a_wrong_token_is_refused_slowly_and_counted(console: Console) -> None:
    """A wrong token gets 401 with the sign-in page naming the problem, after the delay."""
    before = _count("wa_sessions_console_sign_ins_total", outcome="refused")
    started = time.monotonic()
    answer = console.sign_in("not-the-token")
    assert time.monotonic() - started >= 0.2
    assert answer.status_code == 401
    assert "That token is not valid." in answer.text
    assert "wa_console=" not in answer.headers.get("set-cookie", "").split("wa_console_pre")[0]
    assert _count("wa_sessions_console_sign_ins_total", outcome="refused") == before + 1


def test_a_sign_in_without_the_forms_token_is_refused(console: Console) -> None:
    """The sign-in form carries a double-submit token: a cross-site post has no cookie pair."""
    console.client.cookies.clear()
    answer = console.post("/console/sign-in", {"token": "whatever", "csrf_token": "forged"})
    assert answer.status_code == 403
    assert "sign-in form had expired" in answer.text


def test_an_unsigned_visitor_is_sent_to_sign_in_and_partials_get_401(console: Console) -> None:
    """Pages redirect to sign-in; htmx requests and the event stream get 401."""
    page = console.client.get("/console/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in"
    assert console.client.get("/console/", headers={"HX-Request": "true"}).status_code == 401
    assert console.client.get("/console/events").status_code == 401


def test_a_forged_csrf_token_gets_a_readable_403(signed_in: Console) -> None:
    """A POST whose CSRF token is not the console session's is refused with a page."""
    sid = signed_in.service.add_message("+14155550100", "hi").session_id
    answer = signed_in.post(f"/console/sessions/{sid}/complete", {"csrf_token": "forged"})
    assert answer.status_code == 403
    assert "CSRF token does not match" in answer.text
    assert "text/html" in answer.headers["content-type"]
    assert signed_in.service.get_session_by_id(sid, include_messages=False).status == "active"  # type: ignore[union-attr]


def test_the_csrf_header_is_accepted_for_htmx_requests(signed_in: Console) -> None:
    """htmx sends the token in X-CSRF-Token (hx-headers) instead of a form field."""
    sid = signed_in.service.add_message("+14155550100", "hi").session_id
    token = signed_in.csrf()
    answer = signed_in.post(f"/console/sessions/{sid}/complete", headers={"X-CSRF-Token": token})
    assert answer.status_code == 303


def test_sign_out_revokes_the_console_session(signed_in: Console) -> None:
    """After sign-out, the old cookie no longer opens a page (the Redis hash is gone)."""
    cookie = signed_in.client.cookies.get("wa_console")
    assert cookie
    answer = signed_in.post("/console/sign-out", {"csrf_token": signed_in.csrf()})
    assert answer.status_code == 303
    signed_in.client.cookies.set("wa_console", cookie, domain="example.test", path="/console")
    page = signed_in.client.get("/console/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in"


def test_the_console_session_expires_with_its_ttl(signed_in: Console) -> None:
    """The Redis hash of a sign-in carries CONSOLE_SESSION_HOURS as its TTL."""
    client = signed_in.service.store.client
    keys = client.keys("wa:console:s:*")
    assert len(keys) == 1
    assert 12 * 3600 - 5 <= client.ttl(keys[0]) <= 12 * 3600


def test_operator_tokens_are_parsed_and_checked() -> None:
    """name:token pairs; malformed pairs, bad names and repeated tokens are refused."""
    assert make_settings(operator_tokens="a:" + "x" * 32 + ", b:" + "y" * 32).operator_tokens == {
        "a": "x" * 32,
        "b": "y" * 32,
    }
    for bad in ("nocolon", "a b:tok", "admin:" + "x" * 32, "a:t1,a:t2", "a:same,b:same"):
        with pytest.raises(ValidationError):
            make_settings(operator_tokens=bad)


def test_short_operator_tokens_are_refused_outside_development() -> None:
    """Outside development each operator token must be at least 32 characters."""
    settings = make_settings(
        environment="production", admin_token="a" * 40, operator_tokens="bob:short"
    )
    assert isinstance(settings, Settings)
    with pytest.raises(InsecureSettings, match="bob"):
        settings.check_secure()


def test_failed_sign_ins_past_the_limit_get_429_even_with_the_right_token(
    make_console: MakeConsole,
) -> None:
    """Three failures a minute from one address: the fourth attempt gets a readable 429 with
    Retry-After, without its token being looked at, counted; another address is not
    affected; the minute passing lifts it."""
    console = make_console(console_sign_in_failures_per_minute=3, console_sign_in_delay_seconds=0)
    before = _count("wa_sessions_console_sign_ins_total", outcome="rate_limited")
    for _ in range(3):
        assert console.sign_in("not-the-token").status_code == 401
    limited = console.sign_in()
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "60"
    assert "Too many failed sign-ins from your address" in limited.text
    assert "wa_console=" not in limited.headers.get("set-cookie", "").split("wa_console_pre")[0]
    assert _count("wa_sessions_console_sign_ins_total", outcome="rate_limited") == before + 1

    keys = console.service.store.keys
    other = make_console(console_sign_in_failures_per_minute=3, console_sign_in_delay_seconds=0)
    other.client.headers["x-forwarded-for"] = "203.0.113.9"
    assert other.sign_in().status_code == 429  # the proxy header is not trusted by default
    trusting = make_console(console_sign_in_failures_per_minute=3, forwarded_proxy_count=1)
    trusting.client.headers["x-forwarded-for"] = "198.51.100.1, 203.0.113.9"
    assert trusting.sign_in().status_code == 303
    # Behind two proxies the client is the second entry from the right, whatever it put left.
    two = make_console(console_sign_in_failures_per_minute=3, forwarded_proxy_count=2)
    two.client.headers["x-forwarded-for"] = "192.0.2.7, 198.51.100.1, 203.0.113.9"
    assert two.sign_in("not-the-token").status_code == 401
    assert console.service.store.client.ttl(keys.console_sign_in_failures("198.51.100.1")) > 0
    assert console.service.store.client.ttl(keys.console_sign_in_failures("testclient")) > 0
    console.service.store.client.delete(keys.console_sign_in_failures("testclient"))
    assert console.sign_in().status_code == 303


def test_a_right_token_or_a_missing_one_does_not_count_as_a_failure(
    make_console: MakeConsole,
) -> None:
    """Only wrong tokens count towards the limit."""
    console = make_console(console_sign_in_failures_per_minute=1)
    assert console.sign_in().status_code == 303
    console.client.cookies.clear()
    assert console.sign_in("").status_code == 400
    assert console.sign_in().status_code == 303
    keys = console.service.store.keys
    assert console.service.store.client.get(keys.console_sign_in_failures("testclient")) is None
