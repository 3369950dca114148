"""What a customer says to a flow's step, in every supported language (en, es, pt, fr, de, it,
id): "that's all" (the items are done), yes and no (a confirmation), and the shapes of a name
and of an address. One table per kind, every language in it, as the extractor's vocabulary:
a three-word answer has no detected language yet."""

from __future__ import annotations

import re
import unicodedata

from wa_sessions.orders import vocabulary as v


def _table(words: str) -> frozenset[str]:
    return frozenset(" ".join(word.split()) for word in words.split("|")) - {""}


#: "That's all": the items step is done.
DONE_PHRASES = _table(
    """
    that's all|thats all|that is all|that's it|thats it|that is it|nothing else|nothing more|
    no more|i'm done|im done|done|all done|finished|that will be all|that'll be all|
    eso es todo|es todo|nada más|nada mas|ya está|ya esta|eso es|listo|nada más gracias|
    é isso|e isso|é só isso|e so isso|só isso|so isso|mais nada|nada mais|pronto|
    c'est tout|cest tout|rien d'autre|rien de plus|c'est bon|cest bon|
    das ist alles|das wars|das war's|nichts mehr|sonst nichts|fertig|
    è tutto|e tutto|nient'altro|niente altro|nient altro|basta così|basta cosi|basta|
    itu saja|sudah|sudah semua|itu aja|udah|cukup|tidak ada lagi|gak ada lagi|sudah itu saja
    """
)
#: Yes: a confirmation step goes to ``on_yes``.
YES_WORDS = _table(
    """
    yes|y|yeah|yep|yup|sure|ok|okay|confirm|confirmed|correct|right|
    sí|si|claro|vale|confirmo|correcto|
    sim|isso|confirmado|certo|
    oui|ouais|d'accord|je confirme|
    ja|jawohl|genau|bestätigt|bestätige|richtig|
    sì|certo|confermo|giusto|
    ya|iya|betul|benar|setuju|oke
    """
)
#: No: a confirmation step goes to ``on_no``.
NO_WORDS = _table(
    """
    no|n|nope|not yet|wrong|change|
    não|nao|
    non|pas encore|
    nein|falsch|ändern|
    tidak|bukan|belum|ubah|gak|nggak
    """
)

_TRAILING = re.compile(r"[\s.!,;:?¡¿👍🙏✅]+$|^[\s.!,;:?¡¿]+")
_POLITE = re.compile(
    r"(?:,?\s+(?:thanks|thank you|please|gracias|por favor|obrigad[oa]|merci|danke|bitte|grazie|"
    r"terima kasih|makasih))+$"
)
#: A name: letters (any script), spaces, apostrophes, hyphens and dots between them.
_NAME = re.compile(r"^[^\W\d_]+(?:[ '’.\-]+[^\W\d_]+)*\.?$")
#: A street word as a word of its own ("Main Street", "Rua Augusta") or, in German, as the
#: end of one ("Hauptstraße", "Lindenweg"): the extractor's vocabulary.
STREET = re.compile(
    rf"(?:^|[\s,])(?:{v.STREET_AFTER}|{v.STREET_BEFORE})(?:\.|(?=[\s,]|$))"
    rf"|[^\W\d_]{{3,}}(?:{v.STREET_SUFFIX})(?=[\s,.]|$)",
    re.IGNORECASE,
)


def normalise(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation, emoji or thanks: what the word
    tables are compared with."""
    text = unicodedata.normalize("NFC", text).casefold().replace("’", "'")
    text = " ".join(text.split())
    previous = None
    while previous != text:
        previous = text
        text = _POLITE.sub("", _TRAILING.sub("", text))
    return text


def says_done(text: str) -> bool:
    """Whether ``text`` is "that's all" (possibly with "no," before it or thanks after)."""
    said = normalise(text)
    return said in DONE_PHRASES or (
        said.startswith(("no ", "no, ", "non ", "nein ", "não ", "tidak "))
        and normalise(said.split(" ", 1)[1]) in DONE_PHRASES
    )


def says_yes(text: str) -> bool:
    return normalise(text) in YES_WORDS


def says_no(text: str) -> bool:
    said = normalise(text)
    return said in NO_WORDS and said not in YES_WORDS


def is_name(text: str, min_length: int = 2, max_length: int = 80) -> bool:
    """Letters (with spaces, apostrophes, hyphens), ``min_length`` to ``max_length`` long."""
    name = " ".join(text.split())
    return min_length <= len(name) <= max_length and bool(_NAME.match(name))


def looks_like_name(text: str) -> bool:
    """An answer that is clearly a name rather than anything else: a valid name of at most
    four words that is no "that's all", yes or no."""
    name = " ".join(text.split())
    return (
        is_name(name)
        and len(name.split()) <= 4
        and not (says_done(name) or says_yes(name) or says_no(name))
    )


def looks_like_address(text: str) -> bool:
    """A street word with a house number or a place after a comma ("12 Main Street,
    Springfield", "Calle Mayor 5", "Hauptstraße 12", "Jl. Sudirman No. 5")."""
    return bool(STREET.search(text)) and (any(ch.isdigit() for ch in text) or "," in text)
