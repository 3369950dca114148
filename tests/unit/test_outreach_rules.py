"""The rules of business-initiated messages (statemachine/outreach.py): free text only inside
WhatsApp's 24-hour window, templates any time, nothing to a phone that opted out; STOP and its
translations; the request's content checked field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wa_sessions.errors import BadRequest, OptedOut, OutsideWindow
from wa_sessions.statemachine.outreach import (
    OutboundContent,
    is_opt_out,
    refusal,
    validated_content,
)
from wa_sessions.statemachine.steps import to_ms

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SID = "HX" + "a" * 32
TEXT = OutboundContent(text="Your order is waiting")
TEMPLATE = OutboundContent(content_sid=SID, variables={"1": "Ana"})


def test_free_text_inside_the_window_may_be_sent() -> None:
    """A customer who wrote 23 hours ago may get free text."""
    last = to_ms(NOW - timedelta(hours=23))
    assert refusal(TEXT, last_inbound_ms=last, now=NOW, opted_out=False) is None


def test_free_text_outside_the_window_is_refused() -> None:
    """24 hours after the customer's last message, free text is refused, naming the close."""
    last = to_ms(NOW - timedelta(hours=24))
    refused = refusal(TEXT, last_inbound_ms=last, now=NOW, opted_out=False)
    assert isinstance(refused, OutsideWindow)
    assert "2026-12-02T12:00:00+00:00" in str(refused)


def test_free_text_to_a_customer_who_never_wrote_is_refused() -> None:
    """No inbound message: no window."""
    assert isinstance(refusal(TEXT, last_inbound_ms=None, now=NOW, opted_out=False), OutsideWindow)


def test_a_template_is_allowed_outside_the_window() -> None:
    """Approved templates go out whenever."""
    assert refusal(TEMPLATE, last_inbound_ms=None, now=NOW, opted_out=False) is None


@pytest.mark.parametrize("content", [TEXT, TEMPLATE])
def test_nothing_is_sent_to_a_phone_that_opted_out(content: OutboundContent) -> None:
    """STOP refuses templates and text alike."""
    last = to_ms(NOW - timedelta(minutes=1))
    assert isinstance(refusal(content, last_inbound_ms=last, now=NOW, opted_out=True), OptedOut)


@pytest.mark.parametrize(
    "text",
    ["STOP", "stop", " Stop! ", "PARAR", "Alto", "ARRÊT", "arret", "STOPP", "BASTA", "BERHENTI",
     "Pare", "unsubscribe", "STOPALL"],
)  # fmt: skip
def test_stop_and_its_translations_opt_out(text: str) -> None:
    """Twilio's keywords and the words of the seven languages, any case, accents, punctuation."""
    assert is_opt_out(text)


@pytest.mark.parametrize(
    "text", ["stop sending me cheese", "I need 2 stop signs", "para mí 2 pizzas", ""]
)
def test_a_sentence_containing_stop_is_not_an_opt_out(text: str) -> None:
    """Only a whole message that is a keyword opts out."""
    assert not is_opt_out(text)


@pytest.mark.parametrize(
    ("text", "sid", "variables", "field"),
    [
        (None, None, None, "content_sid"),
        ("hi", SID, None, "content_sid"),
        (None, "HX123", None, "content_sid"),
        ("hi", None, {"1": "a"}, "variables"),
        ("  ", None, None, "text"),
        (None, SID, {"1": ["a"]}, "variables.1"),
    ],
)
def test_bad_content_is_refused_naming_the_field(
    text: str | None, sid: str | None, variables: dict[str, object] | None, field: str
) -> None:
    """Exactly one of text and content_sid; a Content SID's shape; variables only for a template."""
    with pytest.raises(BadRequest, match=f"^{field}:"):
        validated_content(text, sid, variables)


def test_template_content_round_trips_through_message_metadata() -> None:
    """The worker rebuilds the template from the stored message's metadata."""
    back = OutboundContent.from_metadata(TEMPLATE.describe(), TEMPLATE.metadata())
    assert back == TEMPLATE
    assert OutboundContent.from_metadata("hi", {}) == OutboundContent(text="hi")
