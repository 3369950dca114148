"""An order extractor of regular expressions, the default when no OpenAI key is configured, so
the service and its demo work offline.

It understands the common shapes: "I need 5 units of Product A", "2 x Margherita pizza",
"3 boxes of apples", "two pizzas", "make that 6", "change the apples to 4", "remove the
apples", "my name is Ana", "deliver to 221B Baker Street". Anything else is "nothing found",
never a guess: a wrong order is worse than a question back to the customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "a dozen": 12,
    "half a dozen": 6,
}
_NUM = r"(?P<qty>\d{1,5}(?:[.,]\d{1,3})?|" + "|".join(sorted(_WORDS, key=len, reverse=True)) + ")"
_UNITS = (
    r"(?P<unit>units?|pcs|pieces?|boxes|box|packs?|packets?|bags?|bottles?|cans?|cases?|"
    r"cartons?|crates?|dozens?|kgs?|kilos?|kilograms?|grams?|g|lbs?|pounds?|liters?|litres?|"
    r"ml|l|slices?|cups?|jars?|trays?|portions?|servings?|loaves|loaf|bunch(?:es)?|sacks?|"
    r"rolls?|sets?|pairs?)"
)
_FLAGS = re.IGNORECASE
# Clauses: items are listed with commas, "and", "plus", semicolons or new sentences. A comma
# between digits is a decimal comma.
_CLAUSES = re.compile(r"(?<!\d),|,(?!\d)|;|:|\n|[.!?](?:\s|$)|\s+(?:and|plus|&)\s+", _FLAGS)
_TIMES = re.compile(rf"^(?:\d+\s*)?[x×*]\s*{_NUM}$", _FLAGS)
_WITH_UNIT = re.compile(rf"\b{_NUM}\s+{_UNITS}\s+(?:of\s+)?(?P<name>.+)$", _FLAGS)
_TIMES_BEFORE = re.compile(rf"\b{_NUM}\s*[x×*]\s*(?P<name>.+)$", _FLAGS)
_TIMES_AFTER = re.compile(rf"^(?P<name>.+?)\s*[x×*]\s*{_NUM}$", _FLAGS)
_BARE = re.compile(rf"\b{_NUM}\s+(?P<name>.+)$", _FLAGS)

_SET_THAT = re.compile(
    rf"\b(?:make|change|update|set)\s+(?:that|it|this)\s+(?:to\s+)?{_NUM}(?:\s+{_UNITS})?\b",
    _FLAGS,
)
_SET_NAMED = re.compile(
    rf"\b(?:make|change|update|set)\s+(?:the\s+|my\s+)?(?P<name>[a-z][\w' -]*?)\s+"
    rf"(?:to\s+)?{_NUM}(?:\s+{_UNITS})?\s*$",
    _FLAGS,
)
_SET_INSTEAD = re.compile(
    rf"^(?:actually|sorry|oops|no)?[\s,!]*{_NUM}(?:\s+{_UNITS})?\s+instead$", _FLAGS
)
_SET_ACTUALLY = re.compile(
    rf"^(?:actually|sorry|oops)[\s,!]+(?:make\s+(?:it|that)\s+)?{_NUM}(?:\s+{_UNITS})?$", _FLAGS
)
_REMOVE = re.compile(
    r"\b(?:remove|delete|drop|cancel|take\s+(?:off|out)|no\s+more|"
    r"(?:i\s+)?(?:don'?t|do\s+not)\s+want)\s+(?:the\s+|my\s+|any\s+|all\s+(?:the\s+|my\s+)?)?"
    r"(?P<name>[^,;!?.]+)",
    _FLAGS,
)
# Every removal needs one of the first words, every quantity change one of the second: an ASCII
# text without any skips those patterns (a cheap test; other text is left to the patterns).
_REMOVE_WORDS = ("remove", "delete", "drop", "cancel", "take", "more", "want")
_SET_WORDS = ("make", "change", "update", "set", "instead", "actually", "sorry", "oops")
_NAME = re.compile(r"\bmy\s+name\s+is\s+(?P<name>[^\W\d_][\w'’ -]{0,60}?)\s*(?:[,.!?;]|$)", _FLAGS)
_ADDRESS = re.compile(
    r"\b(?:deliver(?:ed|y)?(?:\s+(?:it|them|this|that|everything))?\s+to|ship(?:ped)?\s+to|"
    r"send\s+(?:it|them|everything)\s+to|my\s+address\s+is|address\s*:)\s+"
    r"(?P<address>[^.!?\n]*\d[^.!?\n]*|[^.!?\n]{6,})",
    _FLAGS,
)

# Words that end an item name, and words an item name cannot start with (they mean the number
# was a time, a count of something else, or part of a sentence about the order itself).
_NAME_END = re.compile(
    r"\s+(?:please|pls|plz|thanks|thank\s+you|asap|today|tonight|tomorrow|now|too|as\s+well|"
    r"also|for\s+(?:me|us|delivery|pickup|today|tonight|tomorrow|\$|€|£|\d).*|from\s+.*|"
    r"to\s+my\s+order.*|to\s+the\s+order.*|each|in\s+total|total)\b.*$",
    _FLAGS,
)
_LEADING = re.compile(r"^(?:more|extra|additional|another|other|of\s+(?:the\s+)?|the)\s+", _FLAGS)
_STOP_WORDS = """
    more thing things time times minute minutes min mins hour hours hr hrs day days week weeks
    month months year years pm am o'clock oclock percent people person persons of it them those
    these that this order orders item items question questions moment sec second seconds is are
    was were has have had will would can could should to for in on at by from with and or but if
    so as than then there here you we i me my your our he she they him her us his its their what
    which who when where why how times
"""
_STOP_FIRST = frozenset(_STOP_WORDS.split())
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
    if match := _ADDRESS.search(text):
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
    if _may_say(text, _REMOVE_WORDS):
        for removal in _REMOVE.finditer(text):
            name = _clean_name(removal.group("name"))
            index = find_item(order.items, name) if name else None
            if index is not None:
                changes.append(ItemChange(action=ItemAction.REMOVE, name=order.items[index].name))
    if changes or not _may_say(text, _SET_WORDS):
        return changes
    for clause in clauses:
        clause = clause.strip()
        match = (
            _SET_THAT.search(clause) or _SET_INSTEAD.search(clause) or _SET_ACTUALLY.search(clause)
        )
        target: OrderItem | None = None
        if match:
            target = _referenced_item(order, history)
        elif named := _SET_NAMED.search(clause):
            index = find_item(order.items, _clean_name(named.group("name")))
            target = order.items[index] if index is not None else None
            match = named
        if match and target is not None:
            unit = match.groupdict().get("unit")
            changes.append(
                ItemChange(
                    action=ItemAction.SET_QUANTITY,
                    name=target.name,
                    quantity=_quantity(match.group("qty")),
                    unit=unit.lower() if unit else None,
                )
            )
    return changes


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
        if not _plausible(name):
            continue
        unit = match.groupdict().get("unit")
        return ItemChange(
            action=ItemAction.ADD,
            name=name,
            quantity=_quantity(match.group("qty")),
            unit=unit.lower() if unit else None,
        )
    return None


def _clean_name(raw: str) -> str:
    name = _NAME_END.sub("", raw.strip(" \t,;:.!?\"'"))
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
        and words[0].casefold() not in _STOP_FIRST
    )


def _quantity(raw: str) -> int | float:
    word = raw.casefold()
    if word in _WORDS:
        return _WORDS[word]
    value = float(word.replace(",", "."))
    return int(value) if value.is_integer() else value
