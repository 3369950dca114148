"""The analysis panel of the conversation page: missing, then computed by the Analyse button
(a CSRF-checked POST), shown with its findings, marked stale after a new message; the page
keeps the console's strict CSP."""

from __future__ import annotations

import html

from tests.console.conftest import Console
from tests.integration.test_webhook import BUSINESS
from wa_sessions.statemachine.models import MessageDirection

PHONE = "+15550003333"


def _session(console: Console) -> str:
    service = console.service
    service.add_message(PHONE, "Hola, quiero 5 unidades del Producto A", business_number=BUSINESS)
    service.add_message(
        PHONE, "Pedido recibido", direction=MessageDirection.OUTBOUND, business_number=BUSINESS
    )
    session = service.add_message(PHONE, "¿Cuándo llega el pedido?", business_number=BUSINESS)
    return session.session_id


def _panel(page: str) -> str:
    start = page.index('<section aria-labelledby="analysis-h"')
    return html.unescape(page[start : page.index("</section>", start)])


def test_the_panel_offers_analyse_then_shows_the_findings(signed_in: Console) -> None:
    """Not analysed yet, with a button; after it: language, intent, sentiment, summary, the
    open question and the next step, and no button while the analysis is current."""
    sid = _session(signed_in)
    path = f"/console/sessions/{sid}"
    first = signed_in.client.get(path)
    assert "Not analysed yet." in _panel(first.text)
    assert f'action="/console/sessions/{sid}/analyse"' in _panel(first.text)
    done = signed_in.post(f"{path}/analyse", {"csrf_token": signed_in.csrf(path)})
    assert done.status_code == 303
    assert done.headers["location"] == f"{path}?done=analysed"
    panel = _panel(signed_in.client.get(path).text)
    assert "<dt>Language</dt><dd>es</dd>" in panel
    assert "<dt>Intent</dt><dd>order</dd>" in panel
    assert "<dt>Sentiment</dt><dd>neutral</dd>" in panel
    assert "<li>¿Cuándo llega el pedido?</li>" in panel
    assert "Answer the customer's open question." in panel
    assert "By the offline analyser" in panel
    assert "/analyse" not in panel


def test_a_new_message_marks_the_analysis_stale_and_offers_analyse_again(
    signed_in: Console,
) -> None:
    """The stored analysis stays shown, marked, with the button back."""
    sid = _session(signed_in)
    path = f"/console/sessions/{sid}"
    signed_in.post(f"{path}/analyse", {"csrf_token": signed_in.csrf(path)})
    signed_in.service.add_message(PHONE, "Y dos del B", business_number=BUSINESS)
    panel = _panel(signed_in.client.get(path).text)
    assert "New messages since this analysis." in panel
    assert f'action="/console/sessions/{sid}/analyse"' in panel


def test_analyse_without_the_csrf_token_is_refused_and_stores_nothing(signed_in: Console) -> None:
    """The button's POST is a form like the others: no token, no analysis."""
    sid = _session(signed_in)
    refused = signed_in.post(f"/console/sessions/{sid}/analyse", {})
    assert refused.status_code == 403
    page = signed_in.client.get(f"/console/sessions/{sid}")
    assert "Not analysed yet." in _panel(page.text)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
