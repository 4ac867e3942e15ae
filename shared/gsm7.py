"""SMS text in the GSM 03.38 7-bit alphabet: one message holds 160 units; one character outside it turns
the whole message into UCS-2 (70 characters). Pure.

French has letters outside the alphabet (ê, â, î, ô, û, ç, œ): survey SMS are transliterated so a question
stays one message. Survey definitions check their question against ``SURVEY_QUESTION_UNITS`` and the
notifier's SMS builder fits the question and the reply hint into ``SMS_UNITS``.
"""

from __future__ import annotations

#: Units in one SMS of the 7-bit alphabet (no concatenation header).
SMS_UNITS = 160
#: What a survey question may take in an SMS; the rest is the reply hint ("Reply 1-5...", STOP).
SURVEY_QUESTION_UNITS = 90

_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: Characters of the extension table: each is sent as ESC + a character, so it costs two units.
_EXTENSION = "^{}\\[~]|€\f"
BASIC = frozenset(_BASIC)
EXTENSION = frozenset(_EXTENSION)

_TRANSLITERATION = {
    "ê": "e",
    "ë": "e",
    "â": "a",
    "á": "a",
    "î": "i",
    "ï": "i",
    "í": "i",
    "ô": "o",
    "ó": "o",
    "û": "u",
    "ú": "u",
    "ç": "c",
    "ÿ": "y",
    "œ": "oe",
    "Œ": "OE",
    "À": "A",
    "Â": "A",
    "È": "E",
    "Ê": "E",
    "Ë": "E",
    "Î": "I",
    "Ï": "I",
    "Ô": "O",
    "Ù": "U",
    "Û": "U",
    "\u2019": "'",
    "\u2018": "'",
    "\u201c": '"',
    "\u201d": '"',
    "«": '"',
    "»": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u202f": " ",
}


def units(text: str) -> int | None:
    """The 7-bit units ``text`` takes (extension characters count two); None if it needs UCS-2."""
    total = 0
    for char in text:
        if char in BASIC:
            total += 1
        elif char in EXTENSION:
            total += 2
        else:
            return None
    return total


def to_gsm7(text: str) -> str:
    """``text`` in the 7-bit alphabet: French letters and typographic signs transliterated, others ``?``."""
    out = []
    for char in text:
        if char in BASIC or char in EXTENSION:
            out.append(char)
        else:
            out.append(_TRANSLITERATION.get(char, "?"))
    return "".join(out)
