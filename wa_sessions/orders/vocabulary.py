"""The words the rule-based extractor (``rule_based.py``) reads, in every supported language
(en, es, pt, fr, de, it, id): numbers in words, units, connectors ("of", "de", "di"), and the
cues of removals and quantity changes. One table per kind, every language in it, so a message
is read the same whatever the detector said of it (a first message of two words has no
language yet). Adding a language: docs/LANGUAGES.md."""

from __future__ import annotations

# Numbers in words, 1-20, and the usual dozens. Where two languages share a spelling they mean
# the same number ("onze", "quinze", "nove", "seis", "cinco", "sei" is Italian 6 only).
_NUMBERS: dict[str, tuple[str, ...]] = {
    "en": (
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty",
    ),
    "es": (
        "uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
        "dieciséis diecisiete dieciocho diecinueve veinte",
    ),
    "pt": (
        "um dois três quatro cinco seis sete oito nove dez onze doze treze catorze quinze "
        "dezesseis dezessete dezoito dezenove vinte",
    ),
    "fr": (
        "un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze "
        "seize dix-sept dix-huit dix-neuf vingt",
    ),
    "de": (
        "eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn "
        "fünfzehn sechzehn siebzehn achtzehn neunzehn zwanzig",
    ),
    "it": (
        "uno due tre quattro cinque sei sette otto nove dieci undici dodici tredici "
        "quattordici quindici sedici diciassette diciotto diciannove venti",
    ),
    "id": (
        "satu dua tiga empat lima enam tujuh delapan sembilan sepuluh sebelas dua_belas "
        "tiga_belas empat_belas lima_belas enam_belas tujuh_belas delapan_belas "
        "sembilan_belas dua_puluh",
    ),
}
#: Other spellings and words for a number (feminine forms, "a dozen", variants).
_EXTRA_NUMBERS: dict[str, int] = {
    # one: articles that count ("una pizza", "eine Flasche"); "a"/"an" would match too much
    "una": 1, "un": 1, "uma": 1, "une": 1, "ein": 1, "eine": 1, "einen": 1, "sebuah": 1,
    "duas": 2, "tres": 3, "dezasseis": 16, "dezassete": 17, "dezanove": 19, "quatorze": 14,
    "dieciseis": 16, "zwo": 2, "funf": 5, "zwolf": 12,
    "a dozen": 12, "half a dozen": 6, "dozen": 12,
    "una docena": 12, "media docena": 6, "docena": 12,
    "uma dúzia": 12, "meia dúzia": 6, "dúzia": 12, "uma duzia": 12, "meia duzia": 6,
    "une douzaine": 12, "une demi-douzaine": 6, "douzaine": 12,
    "ein dutzend": 12, "ein halbes dutzend": 6, "dutzend": 12,
    "una dozzina": 12, "mezza dozzina": 6, "dozzina": 12,
    "satu lusin": 12, "setengah lusin": 6, "selusin": 12, "lusin": 12,
}  # fmt: skip


def _number_words() -> dict[str, int]:
    words: dict[str, int] = {}
    for (text,) in _NUMBERS.values():
        for value, word in enumerate(text.split(), 1):
            words[word.replace("_", " ")] = value
    words.update(_EXTRA_NUMBERS)
    return words


#: Every number word (lower case) -> its value.
NUMBER_WORDS: dict[str, int] = _number_words()

#: Unit words, singular and plural, as regular expression alternatives (any case).
UNITS = (
    # en
    r"units?|pcs|pieces?|boxes|box|packs?|packets?|bags?|bottles?|cans?|cases?|cartons?|"
    r"crates?|dozens?|kgs?|kilos?|kilograms?|grams?|g|lbs?|pounds?|liters?|litres?|ml|l|"
    r"slices?|cups?|jars?|trays?|portions?|servings?|loaves|loaf|bunch(?:es)?|sacks?|rolls?|"
    r"sets?|pairs?|"
    # es
    r"unidad(?:es)?|cajas?|paquetes?|bolsas?|botellas?|latas?|kilogramos?|gramos?|litros?|"
    r"docenas?|rebanadas?|porci[oó]n(?:es)?|piezas?|frascos?|tarros?|bandejas?|vasos?|"
    # pt
    r"unidades?|caixas?|pacotes?|sacos?|sacolas?|garrafas?|quilos?|gramas?|d[uú]zias?|"
    r"fatias?|por[cç](?:[aã]o|[oõ]es)|pe[cç]as?|potes?|copos?|"
    # fr
    r"unit[ée]s?|bo[iî]tes?|paquets?|sacs?|bouteilles?|canettes?|grammes?|douzaines?|"
    r"tranches?|pi[eè]ces?|caisses?|pots?|barquettes?|verres?|"
    # de
    r"st[uü]ck|stk|kisten?|packungen?|pakete?|paket|t[uü]ten?|flaschen?|dosen?|dose|gramm|"
    r"dutzend|scheiben?|portionen?|kartons?|gl[aä]ser|glas|beutel|schachteln?|becher|"
    # it
    r"unit[àa]|scatol[ae]|pacch[io]|pacchett[io]|sacchett[io]|bottiglie|bottiglia|lattin[ae]|"
    r"chil[io]|gramm[io]|litr[io]|dozzin[ae]|fett[ae]|porzion[ei]|pezz[io]|cass[ae]|"
    r"confezion[ei]|barattol[io]|vasett[io]|"
    # id
    r"buah|biji|kotak|bungkus|pak|kantong|botol|kaleng|gram|lusin|potong|porsi|dus|karton|"
    r"lembar|gelas|cup|bks"
)

#: Between a unit and its item: "of", "de", "del", "d'", "di", "della", "von" ...
CONNECTORS = (
    r"of(?:\s+the)?|del|de(?:\s+(?:la|las|los|les))?|do|da|dos|das|du|des|di|della|dello|"
    r"dei|degli|delle|von|vom"
)
#: Words that join two items of a list: "and" in every language.
AND_WORDS = r"and|plus|&|y|e|et|und|sowie|ed|dan|serta"
#: Articles and quantifier words an item name never starts with (stripped).
LEADING = (
    r"more|extra|additional|another|other|the|of\s+(?:the\s+)?|más|mais|plus\s+de|"
    r"encore|noch|weitere|altr[eio]|ancora|lagi|tambah|"
    r"el|la|los|las|le|les|l['’]|o|os|as|der|die|das|den|dem|il|lo|gli|"
    r"de|del|do|da|dos|das|du|des|d['’]|di|della|dello|dell['’]|dei|degli|delle|von|vom|"
    r"mis?|mes|mon|ma|meine?n?"
)
#: Words that end an item name: "please", "for today", "thanks" ...
NAME_END = (
    r"please|pls|plz|thanks|thank\s+you|asap|today|tonight|tomorrow|now|too|as\s+well|"
    r"also|for\s+(?:me|us|delivery|pickup|today|tonight|tomorrow|\$|€|£|\d).*|from\s+.*|"
    r"to\s+my\s+order.*|to\s+the\s+order.*|each|in\s+total|total|"
    r"por\s+favor|porfa|gracias|obrigad[oa]|s['’]il\s+(?:te|vous)\s+pla[iî]t|svp|merci|"
    r"bitte|danke|per\s+favore|grazie|tolong|ya|yah|dong|deh|kak|terima\s+kasih|makasih|"
    r"hoy|ma[ñn]ana|hoje|amanh[ãa]|aujourd['’]hui|demain|heute|morgen|oggi|domani|"
    r"hari\s+ini|besok|también|tamb[ée]m|aussi|auch|anche|juga|"
    r"para\s+.*|pra\s+.*|pour\s+.*|f[üu]r\s+.*|per\s+.*|untuk\s+.*|"
    r"a\s+mi\s+pedido.*|al\s+pedido.*|ao\s+pedido.*|no\s+pedido.*|[àa]\s+ma\s+commande.*|"
    r"zu\s+meiner\s+bestellung.*|all['’]ordine.*|ke\s+pesanan.*|"
    r"raus|heraus|weg|dal\s+.*|de\s+mi\s+pedido.*|do\s+(?:meu\s+)?pedido.*|"
    r"de\s+ma\s+commande.*|aus\s+.*|dari\s+.*|aja|saja|mehr|invece|instead|stattdessen|plut[ôo]t"
)
# Words an item name cannot start with (the number was a time, a count of something else,
#: or part of a sentence about the order itself).
_STOP_WORDS = """
    more thing things time times minute minutes min mins hour hours hr hrs day days week weeks
    month months year years pm am o'clock oclock percent people person persons of it them
    those these that this order orders item items question questions moment sec second seconds
    is are was were has have had will would can could should to for in on at by from with and
    or but if so as than then there here you we i me my your our he she they him her us his its
    their what which who when where why how
    que qué de en con por para pero y o hora horas minutos días dia días semana semanas personas
    pregunta preguntas pedido pedidos cosa cosas son mi tu su
    horas minutos dias pessoas pergunta perguntas coisa coisas é são meu minha
    heure heures jours semaines personnes question questions commande commandes chose choses
    est sont et ou mais je tu il elle nous vous ils
    uhr stunde stunden minuten tage tag wochen personen frage fragen bestellung sache sachen
    ist sind und oder aber ich du er sie wir ihr
    ora ore minuti giorni giorno settimane persone domanda domande ordine cosa cose è sono e
    jam menit hari minggu orang pertanyaan pesanan hal yang dan atau tapi saya aku kamu
"""
STOP_FIRST = frozenset(_STOP_WORDS.split())

#: Removal cues, followed by the item (an article allowed): "remove", "quita", "tire" ...
REMOVE = (
    r"remove|delete|drop|cancel|take\s+(?:off|out)|no\s+more|(?:i\s+)?(?:don'?t|do\s+not)\s+want|"
    r"quita(?:r|me)?|qu[ií]tame|quitad|elimina(?:r|me)?|b[oó]rra(?:r|me)?|saca(?:r|me)?|"
    r"(?:ya\s+)?no\s+quiero(?:\s+m[aá]s)?|sin|"
    r"tir[ae](?:r)?|remov[ae](?:r)?|retir[ae](?:r)?|cancel[ae](?:r)?|exclu[ai](?:r)?|"
    r"n[ãa]o\s+quero(?:\s+mais)?|"
    r"enl[eè]ve(?:r|z)?|retire(?:r|z)?|supprime(?:r|z)?|annule(?:r|z)?|"
    r"(?:je\s+)?ne\s+veux\s+(?:plus|pas)(?:\s+de)?|plus\s+de|"
    r"entferne(?:n)?|streich(?:e|en)?|l[öo]sch(?:e|en)?|nimm|ohne|"
    r"(?:ich\s+(?:will|m[öo]chte)\s+)?kein(?:e|en)?(?:\s+mehr)?|"
    r"togli(?:ere|mi)?|rimuovi|elimina|cancella|(?:non\s+voglio(?:\s+pi[uù])?)|senza|"
    r"hapus(?:kan)?|batal(?:kan)?|buang|(?:ga|gak|nggak|ngga|tidak|tak)\s+jadi"
)
#: Articles and possessives between a removal cue and the item.
REMOVE_ARTICLE = (
    r"the|my|any|all\s+(?:the\s+|my\s+)?|el|la|los|las|mis?|todas?\s+las|todos?\s+los|"
    r"o|a|os|as|meus?|minhas?|le|les|l['’]|mes|des|die|den|das|der|meine?n?|alle|"
    r"il|lo|gli|i|miei|mie|le\s+mie|i\s+miei"
)
#: Substrings one of which any ASCII removal must contain (a cheap test before the patterns).
REMOVE_HINTS = (
    "remove", "delete", "drop", "cancel", "take", "more", "want", "quit", "elimin", "borr",
    "saca", "quiero", "sin", "tir", "remov", "retir", "exclu", "quero", "enl", "suppr",
    "annul", "veux", "plus", "entfern", "streich", "losch", "nimm", "ohne", "kein", "togli",
    "rimuov", "cancell", "voglio", "senza", "hapus", "batal", "buang", "jadi",
)  # fmt: skip

#: "Make that N" cues: a quantity change of the item talked about last, or of the named one
#: when an item name follows the number ("mejor 4 manzanas").
SET_CUE = (
    r"(?:make|change|update|set)\s+(?:that|it|this)\s+(?:to\s+)?|actually|sorry|oops|"
    r"(?:mejor|m[aá]s\s+bien)(?:\s+que\s+sean)?|que\s+sean|c[aá]mbia(?:lo|la|r)?\s+a|"
    r"en\s+realidad|perd[oó]n|"
    r"melhor(?:\s+ser(?:em)?)?|(?:pode\s+)?(?:muda|troca|altera)(?:r)?\s+(?:para|pra)|"
    r"na\s+verdade|desculp[ae]|"
    r"finalement(?:\s+(?:mets|mettez|fais|faites)-en)?|(?:mets|mettez|fais|faites)-en|"
    r"plut[ôo]t|en\s+fait|pardon|change(?:z)?\s+(?:[àa]|pour)|"
    r"(?:doch\s+)?lieber|stattdessen|eigentlich|[äa]nder(?:e|n)?\s+(?:es\s+|das\s+)?(?:auf|zu)|"
    r"mach(?:e)?\s+(?:es|das|daraus)|"
    r"facciamo|meglio|anzi|fanne|mettine|cambia(?:lo|la)?\s+(?:a|in)|"
    r"(?:ganti|ubah)(?:\s+(?:jadi|menjadi))?|jadi(?:in)?|eh|maaf"
)
#: "N instead" cues after the number.
SET_AFTER = r"instead|en\s+vez|em\s+vez\s+disso|plut[ôo]t|stattdessen|invece|aja|saja"
#: Verbs of a named quantity change ("change the apples to 4", "cambia las manzanas a 4").
SET_VERB = (
    r"make|change|update|set|cambia(?:r)?|muda(?:r)?|troca(?:r)?|altera(?:r)?|"
    r"change(?:z)?|mets|mettez|[äa]ndere?|mach(?:e)?|cambia|metti|ganti|ubah"
)
#: "to" of a named quantity change.
SET_TO = r"to|a|para|pra|[àa]|en|auf|zu|in|jadi|menjadi"
#: Substrings one of which any ASCII quantity change must contain.
SET_HINTS = (
    "make", "change", "update", "set", "instead", "actually", "sorry", "oops", "mejor",
    "bien", "sean", "cambia", "pon", "realidad", "perd", "melhor", "muda", "troca", "altera",
    "verdade", "desculp", "finalement", "mets", "mettez", "fais", "faites", "plut", "fait",
    "pardon", "lieber", "stattdessen", "eigentlich", "ander", "mach", "facciamo", "meglio",
    "anzi", "fanne", "mettine", "invece", "ganti", "ubah", "jadi", "eh", "maaf", "vez",
    "aja",
)  # fmt: skip

# Addresses and names are never order items ("12 Main Street, Springfield" is not 12 x "Main
# Street"). Street words that follow the street's name ("Main Street") ...
STREET_AFTER = (
    r"street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|"
    r"square|sq|terrace|highway|hwy|close|crescent"
)
#: ... and those that come before it ("Calle Mayor 5", "5 rue Cler", "Jl. Sudirman No. 5").
STREET_BEFORE = (
    r"calle|c/|avenida|avda|av|carrera|camino|paseo|plaza|pasaje|ronda|"
    r"rua|travessa|praça|praca|estrada|alameda|largo|"
    r"rue|avenue|boulevard|bd|chemin|allée|allee|impasse|quai|place|"
    r"via|viale|piazza|corso|vicolo|"
    r"jalan|jl|gang|gg"
)
#: German street names end in these ("Hauptstraße 12", "Lindenweg 3").
STREET_SUFFIX = r"stra(?:ß|ss)e|str\.|weg|platz|gasse|allee|ring|damm"
#: What introduces the customer's name: "my name is Ana", "me llamo Ana", "nama saya Budi".
NAME_CUES = (
    r"my\s+name\s+is|i\s+am\s+called|mi\s+nombre\s+es|me\s+llamo|meu\s+nome\s+[ée]|"
    r"me\s+chamo|je\s+m['’]appelle|mon\s+nom\s+est|ich\s+hei(?:ß|ss)e|mein\s+name\s+ist|"
    r"mi\s+chiamo|il\s+mio\s+nome\s+[èe]|nama\s+saya|nama\s+aku"
)
