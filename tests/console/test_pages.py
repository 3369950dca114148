"""The sessions list and the conversation page over sessions the real service stored: rows,
filters, pages, chat items with delivery ticks and notes, Complete and Expire, bad input."""

from __future__ import annotations

import re

from tests.console.conftest import Console
from wa_sessions.statemachine.models import MessageDirection, MessageType

PHONE = "+14155550100"
OTHER = "+14155550101"
OTHER_BUSINESS = "+14155550999"


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr id="row-([0-9a-f-]+)"', html)


def test_a_row_shows_last_message_waiting_time_order_and_window(signed_in: Console) -> None:
    """The customer waits since their first unanswered message; the window counts from the
    last inbound one; the order summary lists the items."""
    service, clock = signed_in.service, signed_in.clock
    session = service.add_message(PHONE, "hello")
    service.add_message(PHONE, "hi, how can I help?", direction=MessageDirection.OUTBOUND)
    clock.advance(minutes=1)
    service.add_message(PHONE, "I need 5 units of Product A")
    service.store.client.hset(
        service.store.keys.session(f"{PHONE}|+14155238886", session.session_id),
        "order",
        '{"items": [{"name": "Product A", "quantity": 5}], "total_amount": 50, "currency": "USD"}',
    )
    clock.advance(minutes=3, seconds=7)
    page = signed_in.client.get("/console/").text
    assert _rows(page) == [session.session_id]
    assert "I need 5 units of Product A" in page
    assert "3 min 07 s" in page
    assert "5 × Product A (50 USD)" in page
    assert "23 h 56 min" in page


def test_the_list_filters_by_status_business_and_phone(signed_in: Console) -> None:
    """Status, business number and a phone search each narrow the rows."""
    service = signed_in.service
    first = service.add_message(PHONE, "one").session_id
    second = service.add_message(OTHER, "two").session_id
    third = service.add_message(PHONE, "three", business_number=OTHER_BUSINESS).session_id
    service.complete_session(second)
    client = signed_in.client
    assert set(_rows(client.get("/console/").text)) == {first, second, third}
    assert set(_rows(client.get("/console/?status=active").text)) == {first, third}
    assert _rows(client.get("/console/?status=completed").text) == [second]
    assert _rows(client.get("/console/", params={"business": OTHER_BUSINESS}).text) == [third]
    assert _rows(client.get("/console/", params={"phone": PHONE}).text) == [first]
    both = {"phone": PHONE, "business": OTHER_BUSINESS}
    assert _rows(client.get("/console/", params=both).text) == [third]


def test_the_list_pages_through_the_index(make_console: object) -> None:
    """Pages follow each other without gaps or repeats; the last has no next link."""
    console: Console = make_console()  # type: ignore[operator]
    console.sign_in()
    console.client.app.state.console.listing.page_size = 3  # type: ignore[attr-defined]
    ids = [console.service.add_message(f"+1415555{n:04d}", "x").session_id for n in range(7)]
    seen: list[str] = []
    url = "/console/"
    while url:
        html = console.client.get(url).text
        seen += _rows(html)
        found = re.search(r'href="(\?[^"]*start=\d+)">Older', html)
        url = "/console/" + found.group(1).replace("&amp;", "&") if found else ""
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 7


def test_bad_filters_get_a_readable_400_page(signed_in: Console) -> None:
    """An unknown status or a malformed phone number is named on a 400 page."""
    answer = signed_in.client.get("/console/?status=open")
    assert answer.status_code == 400
    assert "status must be one of active, completed, expired" in answer.text
    answer = signed_in.client.get("/console/", params={"phone": "not-a-phone"})
    assert answer.status_code == 400
    assert "not valid" in answer.text
    answer = signed_in.client.get("/console/?start=-1")
    assert answer.status_code == 400
    assert "start" in answer.text
    assert "text/html" in answer.headers["content-type"]


def test_an_unknown_or_malformed_session_id_gets_a_page(signed_in: Console) -> None:
    """A malformed id is a 400 page, an unknown one a 404 page; the API keeps its JSON."""
    assert signed_in.client.get("/console/sessions/nope").status_code == 400
    missing = signed_in.client.get("/console/sessions/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert "there is no session" in missing.text
    api = signed_in.client.get("/sessions?status=nope", headers={"Authorization": "Bearer x"})
    assert api.headers["content-type"] == "application/json"


def test_the_conversation_shows_the_chat_ticks_and_notes(signed_in: Console) -> None:
    """Inbound and outbound messages, a system note, and a reply's delivery status as read
    back from its out: hash (a status callback moved it to read)."""
    service = signed_in.service
    sid = service.add_message(PHONE, "I need pizza").session_id
    service.add_message(
        PHONE,
        "Got it: 1 pizza",
        direction=MessageDirection.OUTBOUND,
        metadata={"sender": "twilio", "twilio_sid": "SMreply1", "delivery_status": "sent"},
        message_id="SMreply1",
    )
    service.add_message(PHONE, "order extraction failed: timeout", message_type=MessageType.SYSTEM)
    service.store.client.hset(service.store.keys.outbound("SMreply1"), "status", "read")
    html = signed_in.client.get(f"/console/sessions/{sid}").text
    assert 'class="msg msg-inbound"' in html
    assert 'class="msg msg-outbound"' in html
    assert 'class="msg msg-system"' in html
    assert 'class="ticks ticks-read" aria-label="read"' in html
    assert "order extraction failed: timeout" in html


def test_a_long_history_pages_newest_first(signed_in: Console) -> None:
    """5,000 messages: the first page holds the newest 100, with a link to older ones."""
    service = signed_in.service
    sid = service.add_message(PHONE, "message 0").session_id
    client = service.store.client
    key = service.store.keys.session_messages(f"{PHONE}|+14155238886", sid)
    stored = client.lindex(key, 0)
    client.rpush(key, *[stored.replace("message 0", f"message {n}") for n in range(1, 5000)])  # type: ignore[union-attr]
    html = signed_in.client.get(f"/console/sessions/{sid}").text
    assert "message 4999" in html
    assert "message 4900" in html
    assert "message 4899<" not in html
    assert 'href="?before=4900"' in html
    older = signed_in.client.get(f"/console/sessions/{sid}?before=4900").text
    assert "message 4899" in older
    assert "message 4800" in older
    assert "message 4900<" not in older


def test_complete_and_expire_end_the_session_and_a_second_end_is_a_409(signed_in: Console) -> None:
    """The buttons' POSTs call SessionService; ending an ended session is a readable 409."""
    service = signed_in.service
    sid = service.add_message(PHONE, "hi").session_id
    csrf = signed_in.csrf()
    answer = signed_in.post(f"/console/sessions/{sid}/complete", {"csrf_token": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/sessions/{sid}"
    assert service.get_session_by_id(sid, include_messages=False).status == "completed"  # type: ignore[union-attr]
    again = signed_in.post(f"/console/sessions/{sid}/expire", {"csrf_token": csrf})
    assert again.status_code == 409
    assert "cannot be ended now" in again.text
    other = service.add_message(OTHER, "hi").session_id
    assert (
        signed_in.post(f"/console/sessions/{other}/expire", {"csrf_token": csrf}).status_code == 303
    )
    assert service.get_session_by_id(other, include_messages=False).status == "expired"  # type: ignore[union-attr]


def test_an_oversized_form_is_refused(signed_in: Console) -> None:
    """A console form over 8 KiB is refused before it is parsed."""
    sid = signed_in.service.add_message(PHONE, "hi").session_id
    answer = signed_in.post(f"/console/sessions/{sid}/complete", {"csrf_token": "x" * 9000})
    assert answer.status_code == 400
    assert "over 8192 bytes" in answer.text


def test_console_pages_send_a_policy_that_allows_only_their_own_files(signed_in: Console) -> None:
    """Scripts and styles from the console itself, no inline code, forms and requests only to
    itself, never framed: the strict default of the other answers would block its scripts."""
    for path in ("/console/", "/console/sessions/not-a-session"):
        policy = signed_in.client.get(path).headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["connect-src"] == "'self'"
        assert directives["form-action"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
