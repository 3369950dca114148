"""Business-initiated messages through the real drain over the test Redis: STOP opts the
conversation out for good and is acknowledged in the customer's language."""

from __future__ import annotations

import pytest

from tests.integration.test_effects import CONV, Harness, HarnessFactory, sample
from wa_sessions.replies.catalog import catalogs


@pytest.mark.parametrize(
    ("first", "stop", "language"),
    [
        ("I need 2 units of Product A please", "STOP", "en"),
        ("Necesito 2 pizzas margarita por favor", "PARAR", "es"),
        ("Je voudrais deux pizzas margherita s'il vous plaît", "Arrêt", "fr"),
        (
            "Selamat pagi, saya ingin memesan dua pizza margherita untuk makan malam",
            "berhenti",
            "id",
        ),
    ],
)
def test_stop_opts_the_conversation_out_and_is_acknowledged_in_the_customers_language(
    make_harness: HarnessFactory, first: str, stop: str, language: str
) -> None:
    """The opt-out key is set, the reply is the catalog's acknowledgement, and the keyword
    is not read as an order item."""
    h: Harness = make_harness()
    h.accept(first)
    h.drain()
    order_before = h.session().order_details
    before = sample("wa_sessions_opt_outs_total")

    h.accept(stop)
    h.drain()

    assert h.store.client.exists(h.store.keys.conv_opt_out(CONV))
    assert h.history()[-1] == ("outbound", "text", catalogs()[language]["opted_out"])
    assert h.session().order_details == order_before
    assert sample("wa_sessions_opt_outs_total") == before + 1


def test_a_sentence_with_stop_in_it_does_not_opt_out(h: Harness) -> None:
    """Only a whole-message keyword opts out."""
    h.accept("stop by with 2 units of Product A")
    h.drain()
    assert not h.store.client.exists(h.store.keys.conv_opt_out(CONV))
