"""The reply catalogs: every key in every supported language, the same placeholders as
English, and replies written in the customer's language."""

from __future__ import annotations

import pytest

from wa_sessions.languages.detect import SUPPORTED
from wa_sessions.orders.models import OrderDetails, OrderItem
from wa_sessions.replies.catalog import FALLBACK, KEYS, placeholders, read_catalog
from wa_sessions.replies.templates import ReplyTemplates, text


@pytest.mark.parametrize("language", SUPPORTED)
def test_every_language_translates_every_reply_key(language: str) -> None:
    """A key missing from a .po file fails here (the runtime would fall back to English)."""
    catalog = read_catalog(language)

    assert set(KEYS) - set(catalog) == set()


@pytest.mark.parametrize("language", SUPPORTED)
def test_every_translation_has_the_placeholders_of_its_key(language: str) -> None:
    """A translator who renames ``{items}`` would send a reply with a hole in it."""
    catalog = read_catalog(language)

    assert {key: placeholders(catalog[key]) for key in KEYS} == dict(KEYS)


@pytest.mark.parametrize("language", [lang for lang in SUPPORTED if lang != FALLBACK])
def test_every_language_says_the_order_reply_in_its_own_words(language: str) -> None:
    """No catalog is a copy of English's order texts."""
    catalog = read_catalog(language)
    english = read_catalog(FALLBACK)

    assert all(catalog[key] != english[key] for key in ("order", "empty_order", "nothing"))


def test_a_spanish_customer_gets_the_order_back_in_spanish() -> None:
    """The example of issue #14: 5 x "Producto A" answered in Spanish."""
    order = OrderDetails(items=[OrderItem(name="Producto A", quantity=5, unit="unidades")])

    assert ReplyTemplates().for_order(order, "es") == (
        "✅ Pedido recibido: 5 unidades de Producto A"
    )


def test_a_german_order_line_puts_the_unit_before_the_name_without_a_preposition() -> None:
    """German says "5 Stück Produkt A", not "5 Stück von Produkt A"."""
    order = OrderDetails(items=[OrderItem(name="Äpfel", quantity=3, unit="Kisten")])

    assert ReplyTemplates().for_order(order, "de") == "✅ Bestellung erhalten: 3 Kisten Äpfel"


@pytest.mark.parametrize("language", [None, "xx", "zh"])
def test_an_unknown_or_unsupported_language_is_answered_in_english(language: str | None) -> None:
    """English is the fallback."""
    assert ReplyTemplates().for_nothing(language) == text("nothing", "en")
    assert "e.g." in text("nothing", language)


def test_a_business_template_applies_to_every_language_with_items_in_the_customers() -> None:
    """REPLY_ORDER_TEMPLATE replaces the catalogs' text; the item lines stay translated."""
    templates = ReplyTemplates(order="OK: {items}")
    order = OrderDetails(items=[OrderItem(name="maçãs", quantity=3, unit="caixas")])

    assert templates.for_order(order, "pt") == "OK: 3 caixas de maçãs"
    assert templates.for_order(order, "it") == "OK: 3 caixas di maçãs"
    assert templates.for_order(OrderDetails(), "pt") == text("empty_order", "pt")
