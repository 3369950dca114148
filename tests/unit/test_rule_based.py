"""The offline extractor: the phrasings customers use, the changes it reports, and "nothing"."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from wa_sessions.orders.extractor import ExtractionRequest
from wa_sessions.orders.models import ExtractionResult, ItemAction, OrderDetails, OrderItem
from wa_sessions.orders.rule_based import RuleBasedOrderExtractor, extract_order
from wa_sessions.statemachine.models import Message, MessageDirection

EMPTY = OrderDetails()
ORDER = OrderDetails(
    items=[
        OrderItem(name="Product A", quantity=5, unit="units"),
        OrderItem(name="apples", quantity=3, unit="boxes"),
    ]
)


def changes(result: ExtractionResult) -> list[tuple[str, str, float | None, str | None]]:
    return [(c.action.value, c.name, c.quantity, c.unit) for c in result.changes]


def said(text: str, direction: MessageDirection = MessageDirection.INBOUND) -> Message:
    return Message(id=text, content=text, direction=direction, timestamp=datetime.now(UTC))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I need 5 units of Product A", [("add", "Product A", 5, "units")]),
        ("2 x Margherita pizza", [("add", "Margherita pizza", 2, None)]),
        ("3 boxes of apples", [("add", "apples", 3, "boxes")]),
        ("Margherita pizza x 2", [("add", "Margherita pizza", 2, None)]),
        ("two pizzas please", [("add", "pizzas", 2, None)]),
        ("can I get a dozen eggs", [("add", "eggs", 12, None)]),
        ("1,5 kg of rice", [("add", "rice", 1.5, "kg")]),
        ("2x coke, 1 water", [("add", "coke", 2, None), ("add", "water", 1, None)]),
        (
            "I need 5 units of Product A and 2 boxes of apples",
            [("add", "Product A", 5, "units"), ("add", "apples", 2, "boxes")],
        ),
        (
            "One more thing: can I add 2 units of Product B?",
            [("add", "Product B", 2, "units")],
        ),
    ],
)
def test_order_phrasings_become_add_changes(
    text: str, expected: list[tuple[str, str, float | None, str | None]]
) -> None:
    """Common ways of ordering give one ``add`` per item, with quantity and unit."""
    result = extract_order(text, EMPTY)

    assert result.found
    assert changes(result) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Hi, I want to place an order",
        "Thanks!",
        "and this one",
        "Deliver here please",
        "call me at 415 555 0100",
        "I'll be there in 5 minutes",
        "order 12345 is late",
        "",
    ],
)
def test_messages_without_an_order_say_nothing_found(text: str) -> None:
    """Greetings, thanks, times and reference numbers are "nothing found", never a guess."""
    result = extract_order(text, EMPTY)

    assert result == ExtractionResult.nothing()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("make that 6", [("set_quantity", "apples", 6, None)]),
        ("make it 2 boxes", [("set_quantity", "apples", 2, "boxes")]),
        ("actually 7", [("set_quantity", "apples", 7, None)]),
        ("3 instead", [("set_quantity", "apples", 3, None)]),
        ("change the product a to 4", [("set_quantity", "Product A", 4, None)]),
        ("remove the apples", [("remove", "apples", None, None)]),
        ("I don't want the apple", [("remove", "apples", None, None)]),
        ("no more product a", [("remove", "Product A", None, None)]),
    ],
)
def test_changes_to_existing_items_name_them_as_the_order_does(
    text: str, expected: list[tuple[str, str, float | None, str | None]]
) -> None:
    """Quantity changes and removals refer to the order's own item names."""
    assert changes(extract_order(text, ORDER)) == expected


def test_make_that_means_the_item_the_customer_mentioned_last() -> None:
    """ "make that 6" after talking about Product A changes Product A, not the last item."""
    history = [said("3 boxes of apples"), said("and 5 units of Product A")]

    result = extract_order("make that 6", ORDER, history)

    assert changes(result) == [("set_quantity", "Product A", 6, None)]


def test_removal_of_an_item_the_order_lacks_is_nothing() -> None:
    """ "remove the pears" with no pears is not an order change."""
    assert not extract_order("remove the pears", ORDER).found
    assert not extract_order("make that 6", EMPTY).found


def test_name_and_delivery_address_are_recognised_beside_items() -> None:
    """ "my name is" and "deliver to" fill the customer and address fields."""
    result = extract_order("my name is Ana Lima, 2 pizzas. Deliver to 10 Downing St", EMPTY)

    assert result.customer_name == "Ana Lima"
    assert result.delivery_address == "10 Downing St"
    assert changes(result) == [("add", "pizzas", 2, None)]
    assert all(c.action is ItemAction.ADD for c in result.changes)


def test_the_extractor_reads_the_request_and_needs_no_budget() -> None:
    """The ``OrderExtractor`` face: local, instant, sees recent history."""
    extractor = RuleBasedOrderExtractor()
    request = ExtractionRequest(said("I need 5 units of Product A"))

    result = asyncio.run(extractor.extract(request))

    assert isinstance(result, ExtractionResult)
    assert changes(result) == [("add", "Product A", 5, "units")]
    assert (extractor.name, extractor.budget_seconds) == ("rule_based", 0.0)
    assert extractor.history_limit > 0
