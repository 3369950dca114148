"""The offline extractor in every supported language, from a table per language
(tests/unit/extraction_cases/<code>.py): at least 30 cases each, numbers in words and digits,
units, changes and removals."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wa_sessions.languages.detect import SUPPORTED
from wa_sessions.orders.models import ExtractionResult, OrderDetails
from wa_sessions.orders.rule_based import extract_order

Expected = list[tuple[str, str, float | None, str | None]]


def _table(language: str) -> ModuleType:
    return importlib.import_module(f"tests.unit.extraction_cases.{language}")


def _cases() -> list[tuple[str, str, OrderDetails, Expected]]:
    cases = []
    for language in SUPPORTED:
        table = _table(language)
        cases += [(language, text, OrderDetails(), want) for text, want in table.ADDS]
        cases += [(language, text, table.ORDER, want) for text, want in table.CHANGES]
    return cases


def changes(result: ExtractionResult) -> Expected:
    return [(c.action.value, c.name, c.quantity, c.unit) for c in result.changes]


@pytest.mark.parametrize("language", SUPPORTED)
def test_every_language_has_a_table_of_at_least_30_cases(language: str) -> None:
    """Adds on an empty order, then changes and removals on an order."""
    table = _table(language)

    assert len(table.ADDS) + len(table.CHANGES) >= 30
    assert len(table.CHANGES) >= 8


@pytest.mark.parametrize(("language", "text", "order", "expected"), _cases())
def test_the_extractor_reads_the_case_as_a_reader_of_the_language_would(
    language: str, text: str, order: OrderDetails, expected: Expected
) -> None:
    """Item names come back as the customer wrote them, units as written (lower case)."""
    assert changes(extract_order(text, order)) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.sampled_from([OrderDetails(), _table("es").ORDER]))
def test_any_text_in_the_extractor_never_raises(text: str, order: OrderDetails) -> None:
    """Whatever the customer writes, the extractor answers (found or not)."""
    assert isinstance(extract_order(text, order), ExtractionResult)
