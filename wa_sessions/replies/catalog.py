"""The automatic replies' texts in each supported language: gettext ``.po`` files shipped in
the package (``replies/locales/<code>.po``), read with Babel at run time, so there is no build
step and a translator edits one plain file. ``msgid`` is the reply's key, ``msgstr`` its text
with ``str.format`` placeholders. How to add a language: docs/LANGUAGES.md."""

from __future__ import annotations

import string
from functools import cache
from importlib import resources

from babel.messages.pofile import read_po

from wa_sessions.languages.detect import SUPPORTED

#: The language of a reply when the customer's is unknown, and of a key a catalog lacks.
FALLBACK = "en"

#: Every reply key and the placeholders its text may use.
KEYS: dict[str, frozenset[str]] = {
    "order": frozenset({"items"}),
    "empty_order": frozenset(),
    "nothing": frozenset(),
    "item_with_unit": frozenset({"quantity", "unit", "name"}),
    "item": frozenset({"quantity", "name"}),
    # The conversation templates' prompts (wa_sessions/flows, docs/TEMPLATES.md).
    "flow_items_ask": frozenset(),
    "flow_items_more": frozenset({"items"}),
    "flow_ask_name": frozenset(),
    "flow_ask_address": frozenset(),
    "flow_confirm": frozenset({"items", "name", "address"}),
    "flow_completed": frozenset({"items", "name"}),
    "flow_invalid_name": frozenset(),
    "flow_invalid_address": frozenset(),
    "flow_invalid_answer": frozenset(),
    "flow_yes_or_no": frozenset(),
    "opted_out": frozenset(),
    "nudge": frozenset({"items"}),
}

Catalog = dict[str, str]


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of ``text``; ValueError on broken braces."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def read_catalog(language: str) -> Catalog:
    """The translated keys of one language's ``.po`` file (untranslated entries left out)."""
    path = resources.files("wa_sessions.replies").joinpath("locales", f"{language}.po")
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, abort_invalid=True)
    return {
        str(m.id): str(m.string) for m in catalog if m.id and isinstance(m.string, str) and m.string
    }


@cache
def catalogs() -> dict[str, Catalog]:
    """Every supported language's texts, each key a language lacks taken from ``FALLBACK``;
    read once per process. Refuses (ValueError) a catalog whose placeholders differ from the
    key's, so a bad translation fails at start, not at a customer."""
    fallback = read_catalog(FALLBACK)
    missing = set(KEYS) - set(fallback)
    if missing:
        raise ValueError(f"the {FALLBACK} reply catalog lacks {sorted(missing)}")
    loaded: dict[str, Catalog] = {}
    for language in SUPPORTED:
        own = fallback if language == FALLBACK else read_catalog(language)
        for key, text in own.items():
            if key in KEYS and placeholders(text) != KEYS[key]:
                raise ValueError(
                    f"reply {key!r} in {language} uses {sorted(placeholders(text))}, "
                    f"not {sorted(KEYS[key])}"
                )
        loaded[language] = {key: own.get(key, fallback[key]) for key in KEYS}
    return loaded
