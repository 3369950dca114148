"""The console in Debian's Chromium, driven by Playwright, against the real service (web,
worker and scheduler processes from the Procfile on a private Redis): sign in, watch a message
posted to the signed webhook appear live, read the conversation, complete it, sign out; take a
conversation over, reply through the Twilio stand-in, see it delivered, hand back; refused
without a cookie and with a forged CSRF token. Each page is checked with axe-core (no serious
or critical violation) and photographed (into docs/console/, which the README links, with
``CONSOLE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import ADMIN_TOKEN, AUTH_TOKEN, Service, e2e_redis, service_factory
from tests.fake_apis import Recorded, Reply, fake_twilio, twilio_message

__all__ = ["e2e_redis", "service_factory"]
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
#: Where the pages' screenshots go: docs/console/ (what the README shows) when
#: ``CONSOLE_SCREENSHOTS=1``, else a scratch directory, so a test run leaves the checkout clean.
SHOTS = (
    ROOT / "docs" / "console"
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "wa-console-shots"
)
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
    shot = SHOTS / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one


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


ACCOUNT = "AC" + "0" * 32
REPLY = "Yes, it left this morning."
REPLY_SID = "SM" + "f" * 32
TAKEOVER_PHONE = "+14155550124"


def test_an_operator_takes_over_replies_sees_it_delivered_and_hands_back(
    service_factory: Any, browser: Browser
) -> None:
    """Take over a conversation, send a reply (the Twilio stand-in receives it), watch it
    appear in the chat with the operator's name and its ticks turn to delivered without a
    reload, hand back; axe on the takeover state, photographed for the README."""
    with fake_twilio(ACCOUNT, AUTH_TOKEN) as twilio_api:

        def answer(request: Recorded) -> Reply:
            form = request.form()
            return Reply(201, twilio_message(form, REPLY_SID if form["Body"] == REPLY else None))

        twilio_api.set_default(answer)
        service: Service = service_factory(
            TWILIO_ACCOUNT_SID=ACCOUNT, TWILIO_API_BASE_URL=twilio_api.base_url
        ).start_all()
        base = service.base_url
        sim = service.simulator()
        assert sim.send(TAKEOVER_PHONE, "Is my order on its way?").status == 200
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/console/sign-in")
        page.get_by_label("Operator token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name=TAKEOVER_PHONE).click()
        expect(page.locator(".msg-outbound")).to_have_count(1, timeout=20_000)

        page.get_by_role("button", name="Take over").click()
        expect(page.locator(".badge-held")).to_have_text("Taken over by admin")
        box = page.get_by_label(f"Your reply to {TAKEOVER_PHONE}")
        box.fill(REPLY)
        expect(page.locator("#reply-count")).to_have_text(f"{len(REPLY)} / 1600 characters")
        page.get_by_role("button", name="Send reply").click()
        expect(page.get_by_role("status")).to_contain_text("Reply queued")
        mine = page.locator(".msg-operator")
        expect(mine).to_contain_text(REPLY, timeout=20_000)
        expect(mine).to_contain_text("admin (operator)")
        assert [r.form()["Body"] for r in twilio_api.requests][-1] == REPLY

        # Twilio's delivery callback: the ticks change on the open page, without a reload.
        assert sim.send_status(REPLY_SID, "delivered", to=TAKEOVER_PHONE).status == 200
        expect(mine.locator(".ticks-delivered")).to_have_text("✓✓", timeout=20_000)
        check_accessibility(page)
        photograph(page, "takeover")

        page.get_by_role("button", name="Hand back").click()
        expect(page.get_by_text("Automatic replies are on.")).to_be_visible()
        expect(page.get_by_label(f"Your reply to {TAKEOVER_PHONE}")).to_have_count(0)
        assert [e for e in errors if "Content Security Policy" in e] == []
        context.close()
