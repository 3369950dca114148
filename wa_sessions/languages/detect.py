"""Which of the supported languages a customer's message is written in, or None when the
text does not say clearly (a greeting, "ok", a number).

lingua-language-detector, restricted to the supported languages, works offline and is accurate
on short texts. The detector is built once, on first use: building it is cheap but its first
detection loads the language models (2-4 s and about 190 MiB of RSS for the seven languages,
lingua's import included, measured on this machine), which only the worker's effects need, so
importing this module costs nothing; a worker process warms it up in the background at start
(``warm_up``) so that its first customer does not wait for the load. Thread-safe: lingua's
detector is immutable after construction.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lingua import LanguageDetector

#: ISO 639-1 codes of the languages replies, catalogs and the offline extractor support.
SUPPORTED: tuple[str, ...] = ("en", "es", "pt", "fr", "de", "it", "id")

#: How far apart (lingua's relative distance, 0..1) the best language must be from the next
#: one: below it the detector answers None. 0.25 keeps typical order sentences ("Quero 3 caixas
#: de maçãs") and refuses words shared by several languages ("hola" scores close to Indonesian).
MIN_RELATIVE_DISTANCE = 0.25
#: Fewer letters than this is no evidence at all ("ok", "si", "👍").
MIN_LETTERS = 4

_lock = threading.Lock()
_detector: LanguageDetector | None = None


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language among ``SUPPORTED``, or None when not
    confident. Never raises for any text."""
    if sum(1 for char in text if char.isalpha()) < MIN_LETTERS:
        return None
    language = _get_detector().detect_language_of(text)
    if language is None:
        return None
    return language.iso_code_639_1.name.lower()


def warm_up() -> None:
    """Builds the detector and loads its models with one detection (for a background thread
    at process start; a detection meanwhile waits for the same build)."""
    detect_language("warming up the language models")


def _get_detector() -> LanguageDetector:
    global _detector
    if _detector is None:
        with _lock:
            if _detector is None:
                _detector = _build()
    return _detector


def _build() -> LanguageDetector:
    # Imported here: only processes that detect (the worker) pay for the library's import.
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in SUPPORTED]
    return (
        LanguageDetectorBuilder.from_languages(*languages)
        .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE)
        .build()
    )
