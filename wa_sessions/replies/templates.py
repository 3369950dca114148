"""The reply texts: from the message catalogs in the customer's language (``catalog.py``), or
the business's own template from settings (``REPLY_*_TEMPLATE``), which then applies to every
language. One placeholder, ``{items}``, is filled with the order's lines written in the
customer's language ("5 units of Product A" / "5 unidades de Producto A")."""

from __future__ import annotations

from dataclasses import dataclass

from wa_sessions.orders.models import OrderDetails, OrderItem
from wa_sessions.replies.catalog import FALLBACK, KEYS, catalogs, placeholders

PLACEHOLDERS = KEYS["order"]


def check_template(template: str) -> str:
    """Refuses a template with a placeholder other than ``{items}`` or broken braces."""
    try:
        fields = placeholders(template)
    except ValueError as exc:
        raise ValueError(f"reply template has broken braces: {exc}") from None
    unknown = fields - PLACEHOLDERS
    if unknown:
        raise ValueError(f"reply template may only use {{items}}, not {sorted(unknown)}")
    return template


def text(key: str, language: str | None) -> str:
    """A catalog's text for ``key`` in ``language`` (the fallback language when unsupported)."""
    loaded = catalogs()
    return loaded.get(language or FALLBACK, loaded[FALLBACK])[key]


def format_item(item: OrderItem, language: str | None = None) -> str:
    quantity = f"{item.quantity:g}" if isinstance(item.quantity, float) else str(item.quantity)
    if item.unit:
        return text("item_with_unit", language).format(
            quantity=quantity, unit=item.unit, name=item.name
        )
    return text("item", language).format(quantity=quantity, name=item.name)


def format_items(order: OrderDetails, language: str | None = None) -> str:
    return ", ".join(format_item(item, language) for item in order.items)


@dataclass(frozen=True, slots=True)
class ReplyTemplates:
    """The business's own templates, where set (None: the catalogs' text in the customer's
    language)."""

    order: str | None = None
    empty_order: str | None = None
    nothing: str | None = None

    def __post_init__(self) -> None:
        for template in (self.order, self.empty_order, self.nothing):
            if template is not None:
                check_template(template)

    def for_order(self, order: OrderDetails, language: str | None = None) -> str:
        """The reply to a message that said something about the order."""
        if not order.items:
            return (self.empty_order or text("empty_order", language)).format(items="")
        template = self.order or text("order", language)
        return template.format(items=format_items(order, language))

    def for_nothing(self, language: str | None = None) -> str:
        return (self.nothing or text("nothing", language)).format(items="")

    def for_opt_out(self, language: str | None = None) -> str:
        """The acknowledgement of STOP (catalogs only: no business template)."""
        return text("opted_out", language)

    def for_nudge(self, order: OrderDetails, language: str | None = None) -> str:
        """The free-text reminder of an unconfirmed order (inside the window)."""
        return text("nudge", language).format(items=format_items(order, language))
