"""The language kept in a session: adopted from evidence, changed only on clear evidence,
the business's override first."""

from __future__ import annotations

from wa_sessions.languages.choice import LanguageState, reply_language

SPANISH = "necesito cinco unidades por favor"


def test_the_first_evidence_sets_the_language() -> None:
    """With no language kept, one confident sentence is enough."""
    assert LanguageState().observe("es", SPANISH) == LanguageState("es")


def test_an_item_name_or_a_greeting_is_no_evidence() -> None:
    """Fewer than three words ("2 x Margherita pizza", "gracias") change nothing."""
    state = LanguageState("en")

    assert state.observe("it", "2 x Margherita pizza") == state
    assert state.observe("es", "gracias amigo") == state


def test_one_short_sentence_in_another_language_only_makes_it_a_candidate() -> None:
    """A single short message in Portuguese does not flip a Spanish conversation..."""
    state = LanguageState("es").observe("pt", "quero três caixas")

    assert state == LanguageState("es", "pt")
    assert reply_language(None, state) == "es"


def test_two_consecutive_detections_in_another_language_change_it() -> None:
    """...a second one does."""
    state = (
        LanguageState("es").observe("pt", "quero três caixas").observe("pt", "e mais duas maçãs")
    )

    assert state == LanguageState("pt")


def test_a_detection_back_in_the_kept_language_drops_the_candidate() -> None:
    """The candidate needs consecutive evidence."""
    state = LanguageState("es").observe("pt", "quero três caixas").observe("es", SPANISH)

    assert state == LanguageState("es")
    assert state.observe("pt", "e mais duas maçãs") == LanguageState("es", "pt")


def test_one_long_message_in_another_language_changes_it_at_once() -> None:
    """Forty letters or more of one language is clear evidence."""
    text = "Ich möchte bitte zwei Pizzen und drei Flaschen Wasser bestellen"

    assert LanguageState("en").observe("de", text) == LanguageState("de")


def test_no_confident_detection_changes_nothing() -> None:
    """None is no evidence, even in a long message."""
    state = LanguageState("fr", "it")

    assert state.observe(None, "x " * 50) == state


def test_the_business_override_wins_then_the_kept_language_then_english() -> None:
    """PUT /phones/{phone}/language beats detection; nothing known is English."""
    assert reply_language("de", LanguageState("es")) == "de"
    assert reply_language(None, LanguageState("es")) == "es"
    assert reply_language(None, LanguageState()) == "en"
