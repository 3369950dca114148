"""Which language the service answers a customer in: the business's override for the phone,
else the language kept in the session's context, else English. The kept language follows the
customer's messages but changes only on clear evidence, so one borrowed word ("ok", "gracias")
or a product name ("2 x Margherita pizza" reads as Italian) does not flip the replies. Only a
confident detection of a message of at least three words counts as evidence: a language is
adopted at once when none is kept yet; another one replaces it after two consecutive pieces of
evidence for it, or one message long enough to be unambiguous."""

from __future__ import annotations

from dataclasses import dataclass

#: Context keys (``ctx:<name>`` in the session hash, ``statemachine/redis/keys.py``).
LANGUAGE_KEY = "language"
#: The other language last detected, waiting for a second message to confirm it.
CANDIDATE_KEY = "language_candidate"

#: The language of replies when nothing else says.
DEFAULT_LANGUAGE = "en"
#: Words (of two letters or more) a message needs for its detection to count: shorter messages are
#: mostly item names, greetings and borrowed words.
MIN_EVIDENCE_WORDS = 3
#: Letters in one message that make a confident detection enough on its own.
LONG_MESSAGE_LETTERS = 40


@dataclass(frozen=True, slots=True)
class LanguageState:
    """The session's kept language and the pending candidate (both None at first)."""

    language: str | None = None
    candidate: str | None = None

    def observe(self, detected: str | None, text: str) -> LanguageState:
        """The state after a customer's message ``text`` detected as ``detected`` (None: not
        confident, which changes nothing)."""
        if detected is None or _words(text) < MIN_EVIDENCE_WORDS:
            return self
        if self.language is None or detected == self.language:
            return LanguageState(detected, None)
        if detected == self.candidate or _letters(text) >= LONG_MESSAGE_LETTERS:
            return LanguageState(detected, None)
        return LanguageState(self.language, detected)

    def context(self) -> dict[str, str | None]:
        """The context keys to store."""
        return {LANGUAGE_KEY: self.language, CANDIDATE_KEY: self.candidate}


def reply_language(override: str | None, state: LanguageState) -> str:
    """The business's override wins, then the detected language, then English."""
    return override or state.language or DEFAULT_LANGUAGE


def _words(text: str) -> int:
    """Words of two letters or more ("x" in "2 x pizza" is no word)."""
    return sum(1 for word in text.split() if sum(char.isalpha() for char in word) >= 2)


def _letters(text: str) -> int:
    return sum(1 for char in text if char.isalpha())
