"""The offline analyser's rules, per supported language: intent, sentiment and open questions
from tables of conversations; and, for any text at all, it answers without raising."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wa_sessions.analysis.models import AnalysisRequest, Intent, Sentiment
from wa_sessions.analysis.offline import OfflineAnalyser, analyse_offline
from wa_sessions.statemachine.models import Message, MessageDirection

AT = datetime(2026, 1, 1, tzinfo=UTC)
ITEMS = {"items": [{"name": "A", "quantity": 2}]}


def request(*texts: str, order: dict[str, object] | None = None) -> AnalysisRequest:
    """Customer messages; a text starting with ``> `` is the business's."""
    messages = [
        Message(
            id=str(i),
            content=t.removeprefix("> "),
            direction=MessageDirection.OUTBOUND if t.startswith("> ") else MessageDirection.INBOUND,
            timestamp=AT,
        )
        for i, t in enumerate(texts)
    ]
    return AnalysisRequest("s", messages, order, f"{len(messages)}:x")


# (language, customer text, order held, intent, sentiment)
INTENTS = [
    (
        "en",
        "Hello, I would like to order two boxes of apples please",
        None,
        Intent.ORDER,
        Sentiment.NEUTRAL,
    ),
    (
        "en",
        "Please remove the bananas from my order, thanks",
        ITEMS,
        Intent.ORDER_CHANGE,
        Sentiment.POSITIVE,
    ),
    (
        "en",
        "My delivery arrived damaged and late, I want a refund",
        None,
        Intent.COMPLAINT,
        Sentiment.NEGATIVE,
    ),
    ("en", "What time do you open on Saturday?", None, Intent.QUESTION, Sentiment.NEUTRAL),
    (
        "es",
        "Hola, quisiera pedir cinco unidades del Producto A",
        None,
        Intent.ORDER,
        Sentiment.NEUTRAL,
    ),
    (
        "es",
        "Mejor cambia las manzanas por peras, gracias",
        ITEMS,
        Intent.ORDER_CHANGE,
        Sentiment.POSITIVE,
    ),
    (
        "es",
        "El pedido llegó roto, es inaceptable, quiero un reembolso",
        None,
        Intent.COMPLAINT,
        Sentiment.NEGATIVE,
    ),
    ("es", "¿A qué hora abren mañana?", None, Intent.QUESTION, Sentiment.NEUTRAL),
    ("pt", "Olá, quero 3 caixas de maçãs", None, Intent.ORDER, Sentiment.NEUTRAL),
    (
        "pt",
        "Pode tirar as bananas do pedido, obrigado",
        ITEMS,
        Intent.ORDER_CHANGE,
        Sentiment.POSITIVE,
    ),
    (
        "pt",
        "Minha encomenda não chegou e estou muito irritado",
        None,
        Intent.COMPLAINT,
        Sentiment.NEGATIVE,
    ),
    ("pt", "Vocês abrem no domingo?", None, Intent.QUESTION, Sentiment.NEUTRAL),
    ("fr", "Bonjour, je voudrais commander deux baguettes", None, Intent.ORDER, Sentiment.NEUTRAL),
    (
        "fr",
        "Pouvez-vous enlever le fromage de la commande, merci",
        ITEMS,
        Intent.ORDER_CHANGE,
        Sentiment.POSITIVE,
    ),
    (
        "fr",
        "Le colis est arrivé cassé, je suis très déçu",
        None,
        Intent.COMPLAINT,
        Sentiment.NEGATIVE,
    ),
    ("fr", "Quand est-ce que vous livrez le samedi ?", None, Intent.QUESTION, Sentiment.NEUTRAL),
    ("de", "Hallo, ich möchte zwei Kisten Äpfel bestellen", None, Intent.ORDER, Sentiment.NEUTRAL),
    (
        "de",
        "Bitte die Bananen aus der Bestellung entfernen, danke",
        ITEMS,
        Intent.ORDER_CHANGE,
        Sentiment.POSITIVE,
    ),
    (
        "de",
        "Die Lieferung ist kaputt angekommen, ich bin sehr enttäuscht",
        None,
        Intent.COMPLAINT,
        Sentiment.NEGATIVE,
    ),
    ("de", "Wann haben Sie am Samstag geöffnet?", None, Intent.QUESTION, Sentiment.NEUTRAL),
    (
        "it",
        "Buongiorno, vorrei ordinare tre pizze margherita",
        None,
        Intent.ORDER,
        Sentiment.NEUTRAL,
    ),
    (
        "it",
        "Per favore togli le bibite dall'ordine, grazie",
        ITEMS,
        Intent.ORDER_CHANGE,
        Sentiment.POSITIVE,
    ),
    (
        "it",
        "Il pacco è arrivato danneggiato, sono molto deluso",
        None,
        Intent.COMPLAINT,
        Sentiment.NEGATIVE,
    ),
    ("it", "A che ora aprite domenica?", None, Intent.QUESTION, Sentiment.NEUTRAL),
    ("id", "Halo, saya mau pesan dua kotak apel", None, Intent.ORDER, Sentiment.NEUTRAL),
    (
        "id",
        "Tolong hapus pisang dari pesanan saya, terima kasih",
        ITEMS,
        Intent.ORDER_CHANGE,
        Sentiment.POSITIVE,
    ),
    (
        "id",
        "Paket saya datang rusak dan terlambat, saya sangat kecewa",
        None,
        Intent.COMPLAINT,
        Sentiment.NEGATIVE,
    ),
    ("id", "Jam berapa toko buka hari Minggu?", None, Intent.QUESTION, Sentiment.NEUTRAL),
]


@pytest.mark.parametrize(("language", "text", "order", "intent", "sentiment"), INTENTS)
def test_intent_and_sentiment_follow_each_languages_words(
    language: str, text: str, order: dict[str, object] | None, intent: Intent, sentiment: Sentiment
) -> None:
    """Each language's orders, changes, complaints and questions are told apart."""
    found = analyse_offline(request(text, order=order))
    assert (found.language, found.intent, found.sentiment) == (language, intent, sentiment)


# (customer question, business answer, a later customer question)
QUESTIONS = [
    ("Do you deliver on Sundays?", "Yes, we do.", "How much is the delivery?"),
    ("¿Tienen pan sin gluten?", "Sí, tenemos.", "¿Cuánto cuesta?"),
    ("Vocês entregam no domingo?", "Sim.", "Quanto custa a entrega?"),
    ("Livrez-vous le dimanche ?", "Oui.", "Combien coûte la livraison ?"),
    ("Liefern Sie am Sonntag?", "Ja.", "Wie viel kostet die Lieferung?"),
    ("Consegnate la domenica?", "Sì.", "Quanto costa la consegna?"),
    ("Apakah bisa kirim hari Minggu?", "Bisa.", "Berapa ongkos kirimnya?"),
]


@pytest.mark.parametrize(("asked", "answer", "later"), QUESTIONS)
def test_only_questions_after_the_last_business_message_are_open(
    asked: str, answer: str, later: str
) -> None:
    """A question the business answered is closed; the one asked after it stays open."""
    found = analyse_offline(request(asked, f"> {answer}", later))
    assert found.open_questions == [later]
    assert found.next_step.startswith("Answer")


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("cuanto cuesta el envio", True),
        ("berapa harganya", True),
        ("wie viel kostet das", True),
        ("I want two apples", False),
        ("Quero duas maçãs", False),
    ],
)
def test_a_question_word_opens_a_question_without_a_question_mark(text: str, asked: bool) -> None:
    """Interrogative words count, in the customer's language, when "?" is missing."""
    assert bool(analyse_offline(request(text)).open_questions) is asked


def test_an_order_without_an_address_asks_for_it_and_one_with_it_is_confirmed() -> None:
    """The next step of an order follows what the order still lacks."""
    bare = analyse_offline(request("I want two apples", order=ITEMS))
    assert bare.next_step == "Ask for the delivery address."
    full = analyse_offline(
        request("I want two apples", order={**ITEMS, "delivery_address": "1 Main St"})
    )
    assert full.next_step.startswith("Confirm the order")


def test_the_summary_is_the_customers_most_informative_sentences_in_order() -> None:
    """Short small talk is left out; the sentences with the most content stay, in order."""
    found = analyse_offline(
        request(
            "Hi.",
            "I need 5 units of Product A and 2 of Product B.",
            "Ok.",
            "Deliver to 12 Rose Street tomorrow morning.",
        )
    )
    assert found.summary == (
        "I need 5 units of Product A and 2 of Product B. "
        "Deliver to 12 Rose Street tomorrow morning."
    )


def test_a_conversation_without_customer_text_is_other_and_says_so() -> None:
    found = analyse_offline(request("> Hello! How can we help?"))
    assert found.language is None
    assert found.intent is Intent.OTHER
    assert found.summary == "No text from the customer."


messages = st.lists(
    st.tuples(st.text(), st.booleans()).map(lambda t: ("> " if t[1] else "") + t[0]),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(texts=messages, address=st.none() | st.text())
def test_any_text_in_the_offline_analyser_never_raises(
    texts: list[str], address: str | None
) -> None:
    """Whatever the messages hold (control characters, emoji, any script, empty), the
    analyser answers findings within their bounds."""
    order = {"items": [{"name": "x"}], "delivery_address": address}
    found = asyncio.run(OfflineAnalyser().analyse(request(*texts, order=order)))
    assert len(found.summary) <= 400
    assert len(found.open_questions) <= 5
    assert found.language is None or len(found.language) == 2


def test_a_lone_surrogate_or_control_characters_do_not_break_detection() -> None:
    """Text that is not valid UTF-8 as is (a lone surrogate) still gets findings."""
    found = analyse_offline(request("quiero \ud800 dos manzanas\x00?", "\u202e\u0000"))
    assert found.intent is Intent.ORDER
