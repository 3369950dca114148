"""Reply texts: the items listing, configurable templates and their validation."""

from __future__ import annotations

import pytest

from wa_sessions.orders.models import OrderDetails, OrderItem
from wa_sessions.replies.templates import ReplyTemplates, check_template, format_items


def test_order_reply_lists_the_items() -> None:
    """The design document's reply: "✅ Order received: 5 units of Product A"."""
    details = OrderDetails(
        items=[
            OrderItem(name="Product A", quantity=5, unit="units"),
            OrderItem(name="Margherita pizza", quantity=2),
            OrderItem(name="rice", quantity=1.5, unit="kg"),
        ]
    )

    assert ReplyTemplates().for_order(details) == (
        "✅ Order received: 5 units of Product A, 2 x Margherita pizza, 1.5 kg of rice"
    )


def test_empty_order_and_nothing_found_have_their_own_texts() -> None:
    """Removing the last item and an unreadable message get short helpful texts."""
    templates = ReplyTemplates()

    assert "empty" in templates.for_order(OrderDetails())
    assert "e.g." in templates.for_nothing()


def test_templates_are_configurable() -> None:
    """A business may word the replies its own way, with ``{items}``."""
    templates = ReplyTemplates(order="Got it: {items}!", nothing="Say it again?")
    details = OrderDetails(items=[OrderItem(name="tea", quantity=1)])

    assert templates.for_order(details) == "Got it: 1 x tea!"
    assert templates.for_nothing() == "Say it again?"
    assert format_items(details) == "1 x tea"


@pytest.mark.parametrize("template", ["{customer}", "{items", "{0}"])
def test_templates_with_unknown_placeholders_are_refused(template: str) -> None:
    """Only ``{items}`` may appear; a typo fails at start-up, not on the first reply."""
    with pytest.raises(ValueError, match="template"):
        check_template(template)
    with pytest.raises(ValueError, match="template"):
        ReplyTemplates(order=template)
