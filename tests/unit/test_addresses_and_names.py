"""The offline extractor never reads an address or a name as an order item, with or without
a conversation template: a street address said on its own is the delivery address, "my name
is ..." in each language the customer's name."""

from __future__ import annotations

import pytest

from wa_sessions.orders.models import OrderDetails
from wa_sessions.orders.rule_based import extract_order

ADDRESSES = [
    ("en", "12 Main Street, Springfield"),
    ("en", "221B Baker Street, London"),
    ("en", "10 Downing St, London"),
    ("es", "Calle Mayor 5, Madrid"),
    ("es", "Avenida de la Constitución 12, 41004 Sevilla"),
    ("pt", "Rua Augusta 100, Lisboa"),
    ("fr", "5 rue Cler, Paris"),
    ("de", "Hauptstraße 12, Berlin"),
    ("it", "Via Roma 10, Milano"),
    ("id", "Jl. Sudirman No. 5, Jakarta"),
]
NAMES = [
    ("my name is John Doe", "John Doe"),
    ("me llamo Ana García", "Ana García"),
    ("meu nome é João Silva", "João Silva"),
    ("je m'appelle Marie", "Marie"),
    ("ich heiße Max Müller", "Max Müller"),
    ("mi chiamo Luca", "Luca"),
    ("nama saya Budi", "Budi"),
]


@pytest.mark.parametrize(("language", "text"), ADDRESSES)
def test_an_address_said_on_its_own_is_the_delivery_address_not_an_item(
    language: str, text: str
) -> None:
    """Before: "12 Main Street, Springfield" became 12 x "Main Street"."""
    result = extract_order(text, OrderDetails())

    assert result.changes == []
    assert result.delivery_address == text


@pytest.mark.parametrize(("text", "name"), NAMES)
def test_a_name_is_the_customer_name_not_an_item(text: str, name: str) -> None:
    result = extract_order(text, OrderDetails())

    assert result.changes == []
    assert result.customer_name == name


def test_items_and_an_address_in_one_message_are_told_apart() -> None:
    result = extract_order("2 pizzas, 12 Main Street, Springfield", OrderDetails())

    assert [(c.quantity, c.name) for c in result.changes] == [(2, "pizzas")]
    assert result.delivery_address == "12 Main Street, Springfield"


@pytest.mark.parametrize("text", ["2 street tacos", "3 pizzas, 2 cokes", "5 x Product A"])
def test_items_with_street_like_words_are_still_items(text: str) -> None:
    assert extract_order(text, OrderDetails()).changes
