"""Detection of the customer's language on short WhatsApp messages, per supported language."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wa_sessions.languages.detect import SUPPORTED, detect_language

#: Typical order sentences: each must be detected.
SENTENCES: dict[str, list[str]] = {
    "en": [
        "I need 5 units of Product A",
        "Can I get two pizzas and a bottle of water please",
        "Please remove the apples from my order",
        "Make it three boxes instead",
    ],
    "es": [
        "Hola, necesito 5 unidades del Producto A",
        "Quiero dos pizzas y una botella de agua, por favor",
        "Quita las manzanas de mi pedido",
        "Mejor que sean tres cajas",
    ],
    "pt": [
        "Quero 3 caixas de maçãs",
        "Olá, preciso de duas garrafas de água",
        "Tire as bananas do meu pedido, por favor",
        "Pode mudar para quatro unidades?",
    ],
    "fr": [
        "Je voudrais deux pizzas s'il vous plaît",
        "Bonjour, il me faut cinq bouteilles d'eau",
        "Enlève les pommes de ma commande",
        "Finalement mettez-en trois",
    ],
    "de": [
        "Ich möchte zwei Pizzen bitte",
        "Hallo, ich brauche fünf Flaschen Wasser",
        "Bitte entferne die Äpfel aus meiner Bestellung",
        "Ändere es auf drei Stück",
    ],
    "it": [
        "Vorrei due pizze margherita, grazie",
        "Buongiorno, mi servono cinque bottiglie d'acqua",
        "Togli le mele dal mio ordine",
        "Facciamo tre scatole invece",
    ],
    "id": [
        "Saya mau 3 kotak apel",
        "Halo, saya pesan dua botol air mineral",
        "Tolong hapus apel dari pesanan saya",
        "Ganti jadi empat bungkus ya",
    ],
}

#: One- and two-word messages: the right language or None (not confident), never another.
SHORT: dict[str, list[str]] = {
    "en": ["thanks", "hello there", "yes please"],
    "es": ["gracias", "buenos días", "hola amigo"],
    "pt": ["obrigado", "bom dia", "olá"],
    "fr": ["merci beaucoup", "bonjour", "oui merci"],
    "de": ["danke schön", "guten Morgen", "hallo"],
    "it": ["grazie mille", "buongiorno", "ciao"],
    "id": ["terima kasih", "selamat pagi", "halo kak"],
}


@pytest.mark.parametrize(
    ("language", "text"), [(lang, text) for lang, texts in SENTENCES.items() for text in texts]
)
def test_a_typical_order_sentence_is_detected_in_its_language(language: str, text: str) -> None:
    """Order sentences of a few words are enough evidence for the detector."""
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("language", "text"), [(lang, text) for lang, texts in SHORT.items() for text in texts]
)
def test_a_short_message_is_its_language_or_not_confident(language: str, text: str) -> None:
    """A greeting may be too short to tell; it is never taken for another language."""
    assert detect_language(text) in (language, None)


@pytest.mark.parametrize("text", ["", "ok", "👍", "123", "5 x", "!!!", "   "])
def test_no_letters_or_a_word_of_two_is_not_confident(text: str) -> None:
    """Too little text is no evidence at all."""
    assert detect_language(text) is None


def test_the_supported_languages_are_the_seven_iso_codes() -> None:
    """The contract other parts rely on (catalogs, metrics labels)."""
    assert SUPPORTED == ("en", "es", "pt", "fr", "de", "it", "id")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_detected_as_a_supported_language_or_none(text: str) -> None:
    """The detector never raises and never answers a language outside the supported set."""
    assert detect_language(text) in (*SUPPORTED, None)


def test_importing_costs_nothing_and_warm_up_loads_the_models() -> None:
    """In a fresh interpreter: the import builds no detector (the web never pays for it); the
    worker's background warm-up builds it, so its first customer does not wait for the load."""
    import subprocess
    import sys

    script = (
        "import sys, wa_sessions.languages.detect as d\n"
        "assert d._detector is None and 'lingua' not in sys.modules\n"
        "d.warm_up()\n"
        "assert d._detector is not None\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.stdout.strip() == "ok", out.stderr
