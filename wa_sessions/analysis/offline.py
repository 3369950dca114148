"""The analyser that needs no network: the customer's language by lingua, intent and sentiment
by the word lists of ``rules``, a summary made of the customer's most informative sentences,
open questions ("?" or an opening question word) that no later business message followed, and
a next step by rules. Fast and deterministic; it never raises on any text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from wa_sessions.analysis import rules
from wa_sessions.analysis.models import (
    MAX_OPEN_QUESTIONS,
    MAX_SUMMARY_CHARS,
    AnalyserName,
    AnalysisRequest,
    Findings,
    Intent,
    Sentiment,
)
from wa_sessions.languages.detect import detect_language
from wa_sessions.statemachine.models import Message, MessageDirection

#: The customer text given to the language detector (the end of it: the latest messages).
_DETECT_CHARS = 2000
#: Summary sentences, most informative first, kept in the conversation's order.
_SUMMARY_SENTENCES = 2
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class _Sentence:
    text: str
    normalized: str
    position: int


class OfflineAnalyser:
    """``Analyser`` by rules (``ANALYSIS`` without ``OPENAI_API_KEY``)."""

    name = AnalyserName.OFFLINE
    budget_seconds = 1.0

    async def analyse(self, request: AnalysisRequest) -> Findings:
        return analyse_offline(request)


def analyse_offline(request: AnalysisRequest) -> Findings:
    """The findings of the rules for ``request`` (synchronous: no I/O)."""
    customer = [m for m in request.messages if m.direction is MessageDirection.INBOUND]
    text = "\n".join(_clean(m.content) for m in customer if m.content.strip())
    language = detect_language(text[-_DETECT_CHARS:]) if text else None
    tables = rules.rules_for(language)
    normalized = rules.normalize(text)
    sentences = _sentences(customer)
    questions = open_questions(request.messages, tables)
    intent = _intent(normalized, tables, request.order, bool(questions or _asks(sentences, tables)))
    return Findings(
        language=language,
        intent=intent,
        sentiment=_sentiment(normalized, tables, intent),
        summary=_summary(sentences),
        open_questions=questions,
        next_step=_next_step(intent, questions, request.order, normalized),
    )


def _clean(text: str) -> str:
    # Lone surrogates and the like cannot reach the detector's native code.
    return text.encode("utf-8", "replace").decode("utf-8")


def _sentences(messages: list[Message]) -> list[_Sentence]:
    found: list[_Sentence] = []
    for message in messages:
        for part in _SENTENCE.split(_clean(message.content)):
            part = " ".join(part.split())
            if part:
                found.append(_Sentence(part, rules.normalize(part), len(found)))
    return found


def _is_question(sentence: str, tables: list[rules.LanguageRules]) -> bool:
    if "?" in sentence or sentence.startswith("\u00bf"):
        return True
    normalized = rules.normalize(sentence).lstrip("\u00bf\u00a1 ")
    return any(rules.pattern(t.question).match(normalized) for t in tables)


def _asks(sentences: list[_Sentence], tables: list[rules.LanguageRules]) -> bool:
    return any(_is_question(s.text, tables) for s in sentences)


def open_questions(messages: list[Message], tables: list[rules.LanguageRules]) -> list[str]:
    """The customer's questions after the last business message (those before it count as
    answered), most recent last, at most ``MAX_OPEN_QUESTIONS``."""
    last_reply = max(
        (i for i, m in enumerate(messages) if m.direction is MessageDirection.OUTBOUND),
        default=-1,
    )
    asked = [
        part
        for message in messages[last_reply + 1 :]
        if message.direction is MessageDirection.INBOUND
        for part in (" ".join(p.split()) for p in _SENTENCE.split(_clean(message.content)))
        if part and _is_question(part, tables)
    ]
    return asked[-MAX_OPEN_QUESTIONS:]


def _intent(
    normalized: str,
    tables: list[rules.LanguageRules],
    order: dict[str, object] | None,
    asked: bool,
) -> Intent:
    def hits(attr: str) -> int:
        return sum(rules.count(getattr(t, attr), normalized) for t in tables)

    has_items = bool(order and order.get("items"))
    if hits("complaint"):
        return Intent.COMPLAINT
    ordered = hits("order") > 0 or has_items
    if hits("change") and (has_items or ordered):
        return Intent.ORDER_CHANGE
    if ordered:
        return Intent.ORDER
    if asked:
        return Intent.QUESTION
    return Intent.OTHER


def _sentiment(normalized: str, tables: list[rules.LanguageRules], intent: Intent) -> Sentiment:
    score = sum(
        rules.count(t.positive, normalized) - rules.count(t.negative, normalized) for t in tables
    )
    if intent is Intent.COMPLAINT:
        score -= 1
    if score > 0:
        return Sentiment.POSITIVE
    if score < 0:
        return Sentiment.NEGATIVE
    return Sentiment.NEUTRAL


def _summary(sentences: list[_Sentence]) -> str:
    """The customer's most informative sentences (most distinct words, numbers counting
    double), in the order they were written."""
    if not sentences:
        return "No text from the customer."

    def weight(s: _Sentence) -> tuple[int, int]:
        words = {w for w in _TOKEN.findall(s.normalized) if len(w) > 2 or w.isdigit()}
        return (len(words) + sum(w.isdigit() for w in words), -s.position)

    best = sorted(sentences, key=weight, reverse=True)[:_SUMMARY_SENTENCES]
    text = " ".join(s.text for s in sorted(best, key=lambda s: s.position))
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[: MAX_SUMMARY_CHARS - 1].rstrip() + "\u2026"
    return text


def _next_step(
    intent: Intent, questions: list[str], order: dict[str, object] | None, normalized: str
) -> str:
    has_items = bool(order and order.get("items"))
    has_address = bool(order and order.get("delivery_address")) or bool(
        rules.count(rules.ADDRESS_WORDS, normalized)
    )
    if intent is Intent.COMPLAINT:
        return "Apologise and look into the complaint; an operator should answer in person."
    if questions:
        return "Answer the customer's open question" + ("s." if len(questions) > 1 else ".")
    if intent in (Intent.ORDER, Intent.ORDER_CHANGE) and not has_items:
        return "Ask which items and how many the customer wants."
    if intent in (Intent.ORDER, Intent.ORDER_CHANGE) and not has_address:
        return "Ask for the delivery address."
    if intent in (Intent.ORDER, Intent.ORDER_CHANGE):
        return "Confirm the order and its delivery with the customer."
    return "No action needed."
