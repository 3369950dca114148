"""An order extractor of regular expressions, the default when no OpenAI key is configured, so
the service and its demo work offline.

It understands the common shapes: "I need 5 units of Product A", "2 x Margherita pizza",
"3 boxes of apples", "two pizzas", "make that 6", "change the apples to 4", "remove the
apples", "my name is Ana" (and "me llamo Ana" ... in each language), "deliver to 221B Baker
Street", and an address said on its own ("12 Main Street, Springfield", "Calle Mayor 5"), which
is the delivery address, never an item. Anything else is "nothing found", never a guess: a
wrong order is worse than a question back to the customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wa_sessions.orders import vocabulary as v
from wa_sessions.orders.extractor import ExtractionFailure, ExtractionRequest
from wa_sessions.orders.merge import find_item, item_key
from wa_sessions.orders.models import (
    ExtractionResult,
    ItemAction,
    ItemChange,
    OrderDetails,
    OrderItem,
)
from wa_sessions.statemachine.models import Message, MessageDirection

_FLAGS = re.IGNORECASE


def _alternatives(words: list[str]) -> str:
    """Longest first, so "una docena" wins over "una"; spaces match any run of spaces."""
    ordered = sorted(words, key=len, reverse=True)
    return "|".join(re.escape(word).replace(r"\ ", r"\s+") for word in ordered)


_NUM = rf"(?P<qty>\d{{1,5}}(?:[.,]\d{{1,3}})?|(?:{_alternatives(list(v.NUMBER_WORDS))})(?!\w))"
_UNITS = rf"(?P<unit>{v.UNITS})"
_OF = rf"(?:(?:{v.CONNECTORS})\s+|(?:d|dell)['’]\s*)?"
# Clauses: items are listed with commas, "and" (in each language), "plus", semicolons or new
# sentences. A comma between digits is a decimal comma.
_CLAUSES = re.compile(rf"(?<!\d),|,(?!\d)|;|:|\n|[.!?](?:\s|$)|\s+(?:{v.AND_WORDS})\s+", _FLAGS)
_TIMES = re.compile(rf"^(?:\d+\s*)?[x×*]\s*{_NUM}$", _FLAGS)
_WITH_UNIT = re.compile(rf"\b{_NUM}\s+{_UNITS}\s+{_OF}(?P<name>.+)$", _FLAGS)
_TIMES_BEFORE = re.compile(rf"\b{_NUM}\s*[x×*]\s*(?P<name>.+)$", _FLAGS)
_TIMES_AFTER = re.compile(rf"^(?P<name>.+?)\s*[x×*]\s*{_NUM}$", _FLAGS)
_BARE = re.compile(rf"\b{_NUM}\s+(?P<name>.+)$", _FLAGS)

# A quantity change of the item talked about last ("make that 6", "mejor 3", "lieber 4"), or
# of the item named after the number ("meglio 4 mele").
_SET_CUE = re.compile(
    rf"(?:^|\b)(?:{v.SET_CUE})(?:[\s,!:]+|(?<=\s)){_NUM}(?:\s+{_UNITS})?(?!\w)(?P<rest>.*)$", _FLAGS
)
_SET_AFTER = re.compile(
    rf"^(?:actually|sorry|oops|no|non|nein|não|tidak)?[\s,!]*{_NUM}(?:\s+{_UNITS})?\s+"
    rf"(?:{v.SET_AFTER})$",
    _FLAGS,
)
_SET_NAMED = re.compile(
    rf"\b(?:{v.SET_VERB})\s+(?:(?:{v.REMOVE_ARTICLE})\s+)?(?P<name>[^\W\d_][\w'’ -]*?)\s+"
    rf"(?:(?:{v.SET_TO})\s+)?{_NUM}(?:\s+{_UNITS})?\s*$",
    _FLAGS,
)
_MORE = re.compile(r"^\s*(?:more|extra|m[aá]s|mais|plus|noch|altr[eio]|ancora|lagi)\b", _FLAGS)
_REMOVE = re.compile(
    rf"(?:^|\b)(?:{v.REMOVE})\s+(?:(?:{v.REMOVE_ARTICLE})\s+|l['’]\s*)?(?P<name>[^,;!?.]+)",
    _FLAGS,
)
_NAME = re.compile(
    rf"(?:^|\b)(?:{v.NAME_CUES})\s+(?P<name>[^\W\d_][\w'’ -]{{0,60}}?)\s*(?:[,.!?;]|$)", _FLAGS
)
_WORD = r"[^\W\d_][\w'’.-]*"
_HOUSE = r"\d{1,5}[a-z]?"
# A street address said on its own: "12 Main Street", "5 rue Cler", "Calle Mayor 5", "Jl.
# Sudirman No. 5", "Hauptstraße 12"; then up to two comma-separated places without digits
# ("Springfield", "28013 Madrid").
_STREET_ADDRESS = re.compile(
    rf"(?P<address>(?:(?<![\d.,])\b{_HOUSE}\s+(?!x\b)(?:{_WORD}\s+){{1,4}}?(?:{v.STREET_AFTER})"
    rf"\.?(?=\s*(?:[,;\n]|$))"
    rf"|(?<![\d.,])\b{_HOUSE},?\s+(?:{v.STREET_BEFORE})\.?\s+{_WORD}(?:\s+{_WORD}){{0,3}}"
    rf"|(?:^|\b)(?:{v.STREET_BEFORE})\.?\s+(?:{_WORD}\s+){{1,4}}?(?:n[oº°]?\.?\s*)?{_HOUSE}\b"
    rf"|\b[^\W\d_]{{3,}}(?:{v.STREET_SUFFIX})\s+{_HOUSE}\b)"
    rf"(?:\s*,\s*(?:\d{{4,6}}\s+)?[^\W\d_][^\d,;\n]*){{0,2}})",
    _FLAGS,
)
_ADDRESS = re.compile(
    r"\b(?:deliver(?:ed|y)?(?:\s+(?:it|them|this|that|everything))?\s+to|ship(?:ped)?\s+to|"
    r"send\s+(?:it|them|everything)\s+to|my\s+address\s+is|address\s*:)\s+"
    r"(?P<address>[^.!?\n]*\d[^.!?\n]*|[^.!?\n]{6,})",
    _FLAGS,
)

_NAME_END = re.compile(rf"\s+(?:{v.NAME_END})\b.*$", _FLAGS)
_LEADING = re.compile(rf"^(?:(?:{v.LEADING})\s+|(?:l|d|dell)['’]\s*)", _FLAGS)
_MAX_NAME_WORDS = 8


@dataclass(frozen=True, slots=True)
class RuleBasedOrderExtractor:
    """Deterministic, local and instant; see the module docstring for what it understands."""

    name: str = "rule_based"
    budget_seconds: float = 0.0
    history_limit: int = 10

    async def extract(self, request: ExtractionRequest) -> ExtractionResult | ExtractionFailure:
        return extract_order(request.message.content, request.order, request.history)


def extract_order(
    text: str, order: OrderDetails, history: list[Message] | None = None
) -> ExtractionResult:
    """What ``text`` says about ``order``; ``found`` is false when it says nothing."""
    text = text.strip()
    if not text:
        return ExtractionResult.nothing()
    customer_name = delivery_address = None
    if match := _NAME.search(text):
        customer_name = match.group("name").strip()
        text = _cut(text, match)
    if match := _ADDRESS.search(text) or _STREET_ADDRESS.search(text):
        delivery_address = match.group("address").strip(" ,;")
        text = _cut(text, match)

    clauses = _CLAUSES.split(text)
    changes = _modifications(text, clauses, order, history or [])
    if not changes:
        changes = [change for clause in clauses if (change := _item(clause))]
    if not (changes or customer_name or delivery_address):
        return ExtractionResult.nothing()
    return ExtractionResult(
        found=True,
        changes=changes,
        customer_name=customer_name,
        delivery_address=delivery_address,
    )


def _cut(text: str, match: re.Match[str]) -> str:
    return (text[: match.start()] + " " + text[match.end() :]).strip()


def _modifications(
    text: str, clauses: list[str], order: OrderDetails, history: list[Message]
) -> list[ItemChange]:
    """Quantity changes and removals of items the order already has."""
    if not order.items:
        return []
    changes: list[ItemChange] = []
    if _may_say(text, v.REMOVE_HINTS):
        for removal in _REMOVE.finditer(text):
            name = _clean_name(removal.group("name"))
            index = find_item(order.items, name) if name else None
            if index is not None:
                changes.append(ItemChange(action=ItemAction.REMOVE, name=order.items[index].name))
    if changes or not _may_say(text, v.SET_HINTS):
        return changes
    for clause in clauses:
        change = _set_quantity(clause.strip(), order, history)
        if change is not None:
            changes.append(change)
    return changes


def _set_quantity(clause: str, order: OrderDetails, history: list[Message]) -> ItemChange | None:
    """A quantity change ``clause`` asks of an item of ``order``, if any."""
    target: OrderItem | None = None
    match: re.Match[str] | None = None
    if named := _SET_NAMED.search(clause):
        index = find_item(order.items, _clean_name(named.group("name")))
        if index is not None:
            target, match = order.items[index], named
    if target is None and (match := _SET_CUE.search(clause) or _SET_AFTER.search(clause)):
        rest = match.groupdict().get("rest") or ""
        name = _clean_name(rest)
        if _MORE.match(rest):
            return None
        if not name:
            target = _referenced_item(order, history)
        elif (index := find_item(order.items, name)) is not None:
            target = order.items[index]
    if match is None or target is None:
        return None
    unit = match.groupdict().get("unit")
    return ItemChange(
        action=ItemAction.SET_QUANTITY,
        name=target.name,
        quantity=_quantity(match.group("qty")),
        unit=unit.lower() if unit else None,
    )


def _may_say(text: str, words: tuple[str, ...]) -> bool:
    """False only when ``text`` is ASCII and has none of ``words`` in any case."""
    if not text.isascii():
        return True
    lowered = text.lower()
    return any(word in lowered for word in words)


def _referenced_item(order: OrderDetails, history: list[Message]) -> OrderItem:
    """The item "that" means: the one the customer mentioned last, else the last one added."""
    for message in reversed(history):
        if message.direction is not MessageDirection.INBOUND:
            continue
        said = " ".join(message.content.casefold().split())
        mentioned = [item for item in order.items if item_key(item.name) in said]
        if mentioned:
            return max(mentioned, key=lambda item: said.rfind(item_key(item.name)))
    return order.items[-1]


def _item(clause: str) -> ItemChange | None:
    clause = clause.strip()
    if not clause or _TIMES.match(clause):
        return None
    for pattern in (_WITH_UNIT, _TIMES_BEFORE, _TIMES_AFTER, _BARE):
        match = pattern.search(clause)
        if not match:
            continue
        name = _clean_name(match.group("name"))
        if not _plausible(name) or _counted_unit(match):
            continue
        unit = match.groupdict().get("unit")
        return ItemChange(
            action=ItemAction.ADD,
            name=name,
            quantity=_quantity(match.group("qty")),
            unit=unit.lower() if unit else None,
        )
    return None


def _counted_unit(match: re.Match[str]) -> bool:
    """True when the number and the "unit" are one number word: "una docena" is 12, not one
    dozen-unit."""
    unit = match.groupdict().get("unit")
    return bool(unit) and " ".join(f"{match['qty']} {unit}".casefold().split()) in v.NUMBER_WORDS


def _clean_name(raw: str) -> str:
    name = _NAME_END.sub("", " " + raw.strip(" \t,;:.!?\"'")).strip()
    previous = None
    while previous != name:
        previous = name
        name = _LEADING.sub("", name).strip(" \t,;:.!?\"'")
    return " ".join(name.split())


def _plausible(name: str) -> bool:
    words = name.split()
    return (
        bool(words)
        and len(words) <= _MAX_NAME_WORDS
        and name[0].isalpha()
        and words[0].casefold() not in v.STOP_FIRST
    )


def _quantity(raw: str) -> int | float:
    word = " ".join(raw.casefold().split())
    if word in v.NUMBER_WORDS:
        return v.NUMBER_WORDS[word]
    value = float(word.replace(",", "."))
    return int(value) if value.is_integer() else value
