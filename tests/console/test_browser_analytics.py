"""The analytics page in Debian's Chromium against the real Procfile processes: two customers
write through the signed webhook, the worker answers, one session is completed through the
session API; an operator signs in, follows the header's Analytics link and sees the figures and
the charts drawn, with no serious axe-core violation and no policy violation; a reversed range
is answered with a readable page. The page is photographed into docs/console/analytics.png.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.console.test_browser import browser, check_accessibility, photograph
from tests.e2e.conftest import ADMIN_TOKEN, Service, e2e_redis, service_factory

__all__ = ["browser", "e2e_redis", "service_factory"]
pytestmark = pytest.mark.e2e

CUSTOMERS = ("+14155550131", "+14155550132")


def test_an_operator_reads_the_analytics_of_todays_sessions(
    service_factory: Any, browser: Browser
) -> None:
    """Two sessions started today, one completed: the key figures say so, five charts are
    drawn with their bars, the tables are one click away, and a reversed range is named."""
    service: Service = service_factory().start_all()
    simulator = service.simulator()
    for phone in CUSTOMERS:
        assert simulator.send(phone, "I need 3 boxes of apples").status == 200
    for phone in CUSTOMERS:
        simulator.wait_for_replies(phone, 1, timeout_seconds=20)
    session_id = simulator.session(CUSTOMERS[0]).json()["session"]["session_id"]
    completed = simulator.request("POST", f"/session/{session_id}/complete", admin=True)
    assert completed.status == 200

    base = service.base_url
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/console/sign-in")
    page.get_by_label("Operator token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/console/")

    page.get_by_role("link", name="Analytics").click()
    expect(page.get_by_role("heading", name="Analytics", exact=True)).to_be_visible()
    expect(page.locator("#fig-started")).to_have_text("2")
    expect(page.locator("#fig-completed")).to_have_text("1")
    expect(page.locator("#fig-orders")).to_have_text("1 of 1 ended (100.0 %)")
    expect(page.locator("#fig-reply")).to_contain_text("(2 replies)")
    charts = page.locator(".chart svg[role=img]")
    expect(charts).to_have_count(5)
    for index in range(5):
        expect(charts.nth(index)).to_be_visible()
    items = page.get_by_role("img", name="Most ordered items")
    expect(items.locator("rect.bar")).to_have_count(1)
    assert items.locator("rect.bar").bounding_box()["width"] > 100  # type: ignore[index]
    page.get_by_text("Most ordered items as a table").click()
    expect(page.get_by_role("row", name="apples 3")).to_be_visible()
    check_accessibility(page)
    photograph(page, "analytics")

    page.get_by_label("From (UTC day)").fill("2026-03-05")
    page.get_by_label("To (UTC day)").fill("2026-03-01")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_contain_text("from (2026-03-05) is after to (2026-03-01)")
    check_accessibility(page)
    assert [e for e in errors if "Content Security Policy" in e] == []
    context.close()
