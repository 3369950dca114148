"""The reply texts, configurable in settings: one placeholder, ``{items}``, filled with the
order's lines ("5 units of Product A, 2 x Margherita pizza")."""

from __future__ import annotations

import string
from dataclasses import dataclass

from wa_sessions.orders.models import OrderDetails, OrderItem

ORDER_TEMPLATE = "✅ Order received: {items}"
EMPTY_ORDER_TEMPLATE = "🗑️ Your order is now empty."
NOTHING_TEMPLATE = (
    "Sorry, I couldn't find an order in that message. "
    'Tell me what you need, e.g. "2 x Margherita pizza" or "5 units of Product A".'
)
PLACEHOLDERS = frozenset({"items"})


def check_template(template: str) -> str:
    """Refuses a template with a placeholder other than ``{items}`` or broken braces."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"reply template has broken braces: {exc}") from None
    unknown = fields - PLACEHOLDERS
    if unknown:
        raise ValueError(f"reply template may only use {{items}}, not {sorted(unknown)}")
    return template


def format_item(item: OrderItem) -> str:
    quantity = f"{item.quantity:g}" if isinstance(item.quantity, float) else str(item.quantity)
    if item.unit:
        return f"{quantity} {item.unit} of {item.name}"
    return f"{quantity} x {item.name}"


def format_items(order: OrderDetails) -> str:
    return ", ".join(format_item(item) for item in order.items)


@dataclass(frozen=True, slots=True)
class ReplyTemplates:
    order: str = ORDER_TEMPLATE
    empty_order: str = EMPTY_ORDER_TEMPLATE
    nothing: str = NOTHING_TEMPLATE

    def __post_init__(self) -> None:
        for template in (self.order, self.empty_order, self.nothing):
            check_template(template)

    def for_order(self, order: OrderDetails) -> str:
        """The reply to a message that said something about the order."""
        if not order.items:
            return self.empty_order.format(items="")
        return self.order.format(items=format_items(order))

    def for_nothing(self) -> str:
        return self.nothing.format(items="")
