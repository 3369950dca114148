"""The console's analytics page through the app on the real Redis: customer messages through
the inbox and the real drain (rule-based extractor, a sender standing in for Twilio that takes
3 s of the fake clock), signed delivery callbacks, a session completed with the console's own
button and others expired by the idle sweep; then the page's figures, charts and tables."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from prometheus_client import REGISTRY
from twilio.request_validator import RequestValidator

from tests.console.conftest import Console, MakeConsole
from tests.integration.test_status_callbacks import NextSid, callback_form
from tests.integration.test_webhook import BASE, TOKEN
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor
from wa_sessions.statemachine.identity import Conversation
from wa_sessions.statemachine.models import Message
from wa_sessions.statemachine.redis.inbox import Inbox, InboxPolicy
from wa_sessions.statemachine.steps import to_ms
from wa_sessions.workers import handlers
from wa_sessions.workers.handlers import WorkerDeps

BUSINESS = "+14155238886"
OTHER = "+14155238887"
ALICE = "+14155550101"
BOB = "+14155550102"
CAROL = "+14155550103"
TWO_DAYS = {"from": "2026-01-01", "to": "2026-01-02"}


@dataclass
class Shop:
    """The console, with a drain and Twilio's callbacks driven by hand."""

    console: Console
    sender: NextSid = field(default_factory=NextSid)
    replies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sender.on_accepted = self._accepted
        self.deps = WorkerDeps(
            service=self.console.service,
            inbox=Inbox(self.console.service.store, InboxPolicy()),
            wake=lambda conv: None,
            extractor=RuleBasedOrderExtractor(),
            sender=self.sender,
        )

    def _accepted(self, sid: str) -> None:
        self.console.clock.advance(seconds=3)
        self.replies.append(sid)

    def message(self, phone: str, body: str, business: str = BUSINESS) -> str:
        """A customer message accepted now and drained; the MessageSid of its reply."""
        conv = Conversation(phone, business).key
        now = self.console.clock()
        message = Message(id="SM" + uuid.uuid4().hex, content=body, timestamp=now)
        self.deps.inbox.accept(conv, message, accepted_ms=to_ms(now))
        handlers.drain_conversation(self.deps, conv)
        return self.replies[-1]

    def delivery(self, sid: str, status: str) -> None:
        fields = callback_form(sid, status)
        signature = RequestValidator(TOKEN).compute_signature(BASE + "/twilio-status", fields)
        answer = self.console.client.post(
            "/twilio-status",
            content=urlencode(fields),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        assert answer.status_code == 200, answer.text

    def complete(self, phone: str) -> None:
        """Presses the conversation's Complete button."""
        store = self.console.service.store
        session_id = store.latest_session_id(Conversation(phone, BUSINESS).key)
        path = f"/console/sessions/{session_id}"
        form = {"csrf_token": self.console.csrf(path)}
        assert self.console.post(f"{path}/complete", form).status_code == 303

    def page(self, **params: str) -> str:
        answer = self.console.client.get("/console/analytics", params=params)
        assert answer.status_code == 200, answer.text
        return answer.text


@pytest.fixture
def shop(make_console: MakeConsole) -> Shop:
    console = make_console()
    assert console.sign_in().status_code == 303
    return Shop(console)


def figure(html: str, name: str) -> str:
    found = re.search(rf'<dd id="fig-{name}">(.*?)</dd>', html)
    assert found, f"no figure {name}"
    return found.group(1)


def table_rows(html: str, caption: str) -> list[list[str]]:
    """The rows of the table captioned ``caption``, each as its cells' texts."""
    found = re.search(rf"<caption>{re.escape(caption)}[^<]*</caption>(.*?)</table>", html, re.S)
    assert found, f"no table {caption}"
    body = found.group(1).split("<tbody>")[1]
    return [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def errors(code: str) -> float:
    return REGISTRY.get_sample_value("wa_sessions_api_errors_total", {"code": code}) or 0.0


def test_two_days_of_traffic_show_as_figures_charts_and_tables(shop: Shop) -> None:
    """Two customers at 12:00 (and one of another number) answered 3 s later, one reply
    delivered and one undelivered, one session completed with the console's button at 12:10,
    the others expired by the sweep the next day: the page for the number counts each once."""
    alice = shop.message(ALICE, "I need 5 units of Product A")
    bob = shop.message(BOB, "3 boxes of apples")
    shop.message(CAROL, "2 x pizza", business=OTHER)
    shop.delivery(alice, "delivered")
    shop.delivery(bob, "undelivered")
    shop.console.clock.now = shop.console.clock.now.replace(minute=10, second=0)
    shop.complete(ALICE)
    shop.console.clock.now = shop.console.clock.now.replace(day=2, hour=13, minute=30)
    assert handlers.expire_idle_sessions(shop.deps) == 2

    html = shop.page(**TWO_DAYS, business=BUSINESS)

    assert (figure(html, "started"), figure(html, "completed"), figure(html, "expired")) == (
        "2",
        "1",
        "1",
    )
    assert figure(html, "orders") == "2 of 2 ended (100.0 %)"
    assert figure(html, "reply").startswith("p50 3.5 s, p95 ")
    assert figure(html, "delivery").startswith("50.0 % (1 delivered, 0 read, 0 failed, 1 undel")
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" role="img"') == 5
    assert 'aria-label="Sessions started and ended per hour"' in html
    assert table_rows(html, "Sessions per hour") == [
        ["2026-01-01 12:00", "2", "1", "0"],
        ["2026-01-02 13:00", "0", "0", "1"],
    ]
    assert table_rows(html, "Most ordered items") == [["product a", "5"], ["apples", "3"]]
    assert ["≤2", "2"] in table_rows(html, "Messages per session")
    assert ["≤5 s", "2"] in table_rows(html, "Message to reply time")
    assert f'<option value="{BUSINESS}" selected>' in html
    assert f'<option value="{OTHER}">{OTHER}</option>' in html

    everyone = shop.page(**TWO_DAYS)
    assert figure(everyone, "started") == "3"
    assert [row[0] for row in table_rows(everyone, "Most ordered items")] == [
        "product a",
        "apples",
        "pizza",
    ]


def test_a_range_over_three_days_is_charted_per_day(shop: Shop) -> None:
    """Eight days: one group of bars per day, and the table lists every day."""
    shop.message(ALICE, "hello")

    html = shop.page(**{"from": "2025-12-28", "to": "2026-01-04"})

    assert 'aria-label="Sessions started and ended per day"' in html
    rows = table_rows(html, "Sessions per day")
    assert len(rows) == 8
    assert rows[4] == ["2026-01-01", "1", "0", "0"]


def test_the_page_defaults_to_the_last_seven_days_and_keeps_to_the_policy(shop: Shop) -> None:
    """No parameters: the seven days ending today; no inline script or style anywhere, and
    the policy allows none."""
    answer = shop.console.client.get("/console/analytics")

    assert 'name="from" type="date" value="2025-12-26"' in answer.text
    assert 'name="to" type="date" value="2026-01-01"' in answer.text
    assert re.search(r"<script(?![^>]*\ssrc=)", answer.text) is None
    assert "style=" not in answer.text
    assert "<style" not in answer.text
    policy = answer.headers["content-security-policy"]
    assert "style-src 'self';" in policy
    assert "unsafe-inline" not in policy


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"from": "2026-01-05", "to": "2026-01-01"}, "from (2026-01-05) is after to (2026-01-01)"),
        ({"from": "2026-13-01"}, "from must be a date as YYYY-MM-DD"),
        ({"from": "2025-01-01", "to": "2026-01-01"}, "the range spans 366 days; at most 92"),
    ],
)
def test_a_bad_range_gets_a_readable_400_page_naming_it(
    shop: Shop, params: dict[str, str], problem: str
) -> None:
    """The error page says what is wrong with the range, and the refusal is counted under
    the session API's code for it."""
    before = errors("invalid_day_range")

    answer = shop.console.client.get("/console/analytics", params=params)

    assert answer.status_code == 400
    assert "text/html" in answer.headers["content-type"]
    assert problem in answer.text
    assert "Bad day range" in answer.text
    assert errors("invalid_day_range") == before + 1


def test_a_bad_business_number_or_an_overlong_parameter_is_refused(shop: Shop) -> None:
    """A business number that is not one, or a date parameter longer than a date: 400 pages."""
    number = shop.console.client.get("/console/analytics", params={"business": "not-a-phone"})
    assert number.status_code == 400
    assert "the business number is not valid" in number.text
    long = shop.console.client.get("/console/analytics", params={"to": "2026-01-01" * 2})
    assert long.status_code == 400
    assert "to:" in long.text


def test_a_signed_out_visitor_is_sent_to_sign_in(make_console: MakeConsole) -> None:
    """No cookie: the page redirects to sign-in and shows no figures."""
    console = make_console()

    answer = console.client.get("/console/analytics", follow_redirects=False)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in"


def test_the_header_links_to_the_analytics_page(shop: Shop) -> None:
    """Every signed-in page's header has the Analytics link."""
    assert '<a href="/console/analytics">Analytics</a>' in shop.console.client.get("/console/").text
