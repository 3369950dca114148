"""How one message's extraction result changes the order a session holds, as a pure function.

Items match by a loose key (case, spacing, leading articles and a plural ``s`` ignored), so
"remove the apple" finds "apples". ``add`` adds to an item's quantity, ``set_quantity`` replaces
it, both insert a missing item; ``remove`` of an item the order lacks changes nothing. Other
fields are replaced when the message states them and kept otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from wa_sessions.orders.models import ExtractionResult, ItemAction, OrderDetails, OrderItem

_ARTICLES = re.compile(r"^(?:the|a|an|some|my|our)\s+")
_FIELDS = ("customer_name", "delivery_address", "notes", "currency", "total_amount")


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """The order after the merge, whether it differs from before, and the items touched."""

    order: OrderDetails
    changed: bool
    touched: list[str] = field(default_factory=list)


@lru_cache(maxsize=4096)
def item_key(name: str) -> str:
    """The loose identity of an item name (cached: a few names recur in every merge)."""
    key = " ".join(name.casefold().split())
    key = _ARTICLES.sub("", key)
    if key.endswith("es") and key[:-2].endswith(("ch", "sh", "x", "ss")):
        key = key[:-2]
    elif key.endswith("s") and not key.endswith("ss") and len(key) > 3:
        key = key[:-1]
    return key


def tidy_quantity(value: float) -> int | float:
    """Whole quantities as ints (``5``, not ``5.0``); others to three decimals."""
    if float(value).is_integer():
        return int(value)
    return round(float(value), 3)


def find_item(items: list[OrderItem], name: str) -> int | None:
    key = item_key(name)
    for index, item in enumerate(items):
        if item_key(item.name) == key:
            return index
    return None


def merge_order(current: OrderDetails, result: ExtractionResult) -> MergeOutcome:
    """Applies ``result``'s changes, in order, to a copy of ``current``."""
    if not result.found:
        return MergeOutcome(current, changed=False)
    # Items are never changed in place: an item the changes touch is copied once, at the end,
    # with its final quantity and unit (each step tidied as it goes); the others are shared.
    items = list(current.items)
    keys = [item_key(item.name) for item in items]
    pending: list[tuple[int | float, str | None] | None] = [None] * len(items)
    touched: list[str] = []
    for change in result.changes:
        key = item_key(change.name)
        index = keys.index(key) if key in keys else None
        if change.action is ItemAction.REMOVE:
            if index is not None:
                del keys[index], pending[index]
                touched.append(items.pop(index).name)
            continue
        if change.quantity is None:
            continue
        if index is None:
            items.append(
                OrderItem(
                    name=change.name,
                    quantity=tidy_quantity(change.quantity),
                    unit=change.unit or None,
                )
            )
            keys.append(key)
            pending.append(None)
            touched.append(change.name)
            continue
        item = items[index]
        quantity, unit = pending[index] or (item.quantity, item.unit)
        if change.action is ItemAction.ADD:
            quantity += change.quantity
        else:
            quantity = change.quantity
        pending[index] = (tidy_quantity(quantity), change.unit or unit)
        touched.append(item.name)
    items = [
        item
        if update is None
        else item.model_copy(update={"quantity": update[0], "unit": update[1]})
        for item, update in zip(items, pending, strict=True)
    ]
    updates: dict[str, object] = {"items": items}
    for name in _FIELDS:
        value = getattr(result, name)
        if isinstance(value, str):
            value = value.strip() or None
        if value is not None:
            updates[name] = value
    merged = current.model_copy(update=updates)
    return MergeOutcome(merged, changed=merged != current, touched=touched)
