"""The console in Debian's Chromium, driven by Playwright, against the real service (web,
worker and scheduler processes from the Procfile on a private Redis): sign in, watch a message
posted to the signed webhook appear live, read the conversation, complete it, sign out; refused
without a cookie and with a forged CSRF token. Each page is checked with axe-core (no serious
or critical violation) and photographed into docs/console/ (the README links the pictures).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import ADMIN_TOKEN, Service, e2e_redis, service_factory

__all__ = ["e2e_redis", "service_factory"]
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SHOTS = ROOT / "docs" / "console"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = "+14155550123"


def find_or_install_chromium() -> Path:
    """Debian's Chromium, installed with apt-get when running as root (as CI does); never a
    browser build downloaded by Playwright."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("chromium is missing: `sudo apt-get install chromium`", pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=True)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_or_install_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=FLAGS)
        yield browser
        browser.close()


def check_accessibility(page: Page) -> None:
    """axe-core in the page: no serious or critical violation. Evaluated through the browser's
    debugging protocol rather than added as a ``<script>``, which the page's policy refuses."""
    page.evaluate(AXE.read_text())
    result: dict[str, Any] = page.evaluate("() => axe.run(document)")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], bad


def photograph(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_an_operator_signs_in_watches_a_message_arrive_and_completes_it(
    service_factory: Any, browser: Browser
) -> None:
    """The whole round: sign-in page, live list, conversation, Complete, sign-out."""
    service: Service = service_factory().start_all()
    base = service.base_url
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    # A policy violation (a blocked script, style or request) shows up as a console error.
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/console/")
    expect(page).to_have_url(f"{base}/console/sign-in")
    check_accessibility(page)
    photograph(page, "sign-in")

    page.get_by_label("Operator token").fill("wrong-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    page.get_by_label("Operator token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/console/")
    expect(page.get_by_text("No sessions match.")).to_be_visible()

    # Posted to the signed webhook while the list is open: the row appears without a reload.
    assert service.simulator().send(PHONE, "I need 3 boxes of apples").status == 200
    row = page.get_by_role("row").filter(has_text=PHONE)
    expect(row).to_be_visible(timeout=20_000)
    expect(row).to_contain_text("3 × ", timeout=20_000)
    check_accessibility(page)
    photograph(page, "sessions")

    page.get_by_role("link", name=PHONE).click()
    expect(page.get_by_role("heading", name=f"Conversation with {PHONE}")).to_be_visible()
    expect(page.locator(".msg-inbound")).to_contain_text("I need 3 boxes of apples")
    expect(page.locator(".msg-outbound")).to_have_count(1, timeout=20_000)
    check_accessibility(page)
    photograph(page, "conversation")

    # A forged CSRF token is refused with a readable page, and changes nothing.
    session_url = page.url
    forged = page.request.post(f"{session_url}/complete", form={"csrf_token": "forged"})
    assert forged.status == 403
    assert "CSRF token does not match" in forged.text()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Complete").click()
    expect(page.locator(".facts .badge").first).to_have_text("completed")
    check_accessibility(page)

    cookie = next(c for c in context.cookies() if c["name"] == "wa_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{base}/console/sign-in")
    assert [e for e in errors if "Content Security Policy" in e] == []

    # The old cookie, replayed in a fresh browser, opens nothing: sign-out revoked it.
    replay = browser.new_context()
    replay.add_cookies([cookie])  # type: ignore[list-item]
    answer = replay.request.get(f"{base}/console/", max_redirects=0)
    assert answer.status == 303
    assert answer.headers["location"] == "/console/sign-in"
    replay.close()
    context.close()


def test_a_visitor_without_a_cookie_is_refused(service_factory: Any, browser: Browser) -> None:
    """Pages send an unsigned visitor to sign-in; the event stream and a POST answer 401."""
    service: Service = service_factory().start_all()
    context = browser.new_context()
    base = service.base_url
    page = context.request.get(f"{base}/console/", max_redirects=0)
    assert page.status == 303
    events = context.request.get(f"{base}/console/events")
    assert events.status == 401
    post = context.request.post(
        f"{base}/console/sessions/00000000-0000-4000-8000-000000000000/complete",
        form={"csrf_token": "x"},
        max_redirects=0,
    )
    assert post.status == 303
    assert post.headers["location"] == "/console/sign-in"
    context.close()
