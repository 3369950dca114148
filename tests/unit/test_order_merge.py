"""Merging one message's extraction result into the session's order details."""

from __future__ import annotations

from wa_sessions.orders.merge import item_key, merge_order
from wa_sessions.orders.models import (
    ExtractionResult,
    ItemAction,
    ItemChange,
    OrderDetails,
    OrderItem,
)

ADD, SET, REMOVE = ItemAction.ADD, ItemAction.SET_QUANTITY, ItemAction.REMOVE


def order(*items: tuple[str, float, str | None]) -> OrderDetails:
    return OrderDetails(items=[OrderItem(name=n, quantity=q, unit=u) for n, q, u in items])


def found(*changes: ItemChange, **fields: object) -> ExtractionResult:
    return ExtractionResult.model_validate({"found": True, "changes": changes, **fields})


def lines(details: OrderDetails) -> list[tuple[str, float, str | None]]:
    return [(i.name, i.quantity, i.unit) for i in details.items]


def test_add_inserts_a_new_item() -> None:
    """An item the order lacks is appended with its quantity and unit."""
    outcome = merge_order(
        OrderDetails(), found(ItemChange(action=ADD, name="Product A", quantity=5, unit="units"))
    )

    assert outcome.changed
    assert outcome.order.model_dump(mode="json")["items"] == [
        {"name": "Product A", "quantity": 5, "unit": "units"}
    ]
    assert outcome.touched == ["Product A"]


def test_add_to_an_existing_item_adds_to_its_quantity() -> None:
    """ "2 more apples" increments; names match loosely (case, article, plural)."""
    outcome = merge_order(
        order(("apples", 3, "boxes")), found(ItemChange(action=ADD, name="the Apple", quantity=2))
    )

    assert lines(outcome.order) == [("apples", 5, "boxes")]


def test_set_quantity_replaces_the_quantity() -> None:
    """ "make that 6" sets, keeping the unit unless a new one is given."""
    current = order(("Product A", 5, "units"), ("apples", 3, "boxes"))

    outcome = merge_order(current, found(ItemChange(action=SET, name="product a", quantity=6)))

    assert lines(outcome.order) == [("Product A", 6, "units"), ("apples", 3, "boxes")]
    assert outcome.changed


def test_remove_drops_the_item() -> None:
    """ "remove the apples" leaves the rest in order."""
    current = order(("Product A", 5, "units"), ("apples", 3, "boxes"))

    outcome = merge_order(current, found(ItemChange(action=REMOVE, name="apples")))

    assert lines(outcome.order) == [("Product A", 5, "units")]
    assert outcome.touched == ["apples"]


def test_nothing_found_or_a_no_op_leaves_the_order_unchanged() -> None:
    """No result, a removal of a missing item, or the same quantity: ``changed`` is false."""
    current = order(("Product A", 5, "units"))

    for result in (
        ExtractionResult.nothing(),
        found(ItemChange(action=REMOVE, name="pears")),
        found(ItemChange(action=SET, name="Product A", quantity=5)),
    ):
        outcome = merge_order(current, result)
        assert not outcome.changed
        assert outcome.order == current


def test_changes_apply_in_order_and_fields_are_replaced_only_when_stated() -> None:
    """Several changes in one message apply in sequence; unstated fields keep their value."""
    current = OrderDetails(customer_name="Ana", notes="ring twice", items=[])

    outcome = merge_order(
        current,
        found(
            ItemChange(action=ADD, name="pizza", quantity=1),
            ItemChange(action=ADD, name="pizza", quantity=1.5),
            ItemChange(action=SET, name="coke", quantity=2),
            delivery_address=" 10 Downing St ",
        ),
    )

    assert lines(outcome.order) == [("pizza", 2.5, None), ("coke", 2, None)]
    assert outcome.order.customer_name == "Ana"
    assert outcome.order.notes == "ring twice"
    assert outcome.order.delivery_address == "10 Downing St"


def test_keys_the_business_stored_survive_a_merge() -> None:
    """Order details written through the session API keep their extra keys."""
    current = OrderDetails.model_validate({"items": [], "status": "confirmed"})

    outcome = merge_order(current, found(ItemChange(action=ADD, name="tea", quantity=1)))

    assert outcome.order.model_dump(mode="json")["status"] == "confirmed"


def test_item_keys_ignore_case_articles_and_plurals() -> None:
    """The loose identity used to match items."""
    assert item_key("The Apples") == item_key("apple") == "apple"
    assert item_key("boxes") == item_key("box")
    assert item_key("Glass") == "glass"
