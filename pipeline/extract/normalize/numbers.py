"""Numbers as plain-language pages write them.

Rules:

* digits with an optional decimal point ("3", "1.5") and thousands separators ("1,000");
  a decimal comma ("1,5") is *not* a number (it is too often a list: "1,5 and 7");
* vulgar fractions, alone or after digits ("½", "1½", "1 ½"), and "1/2", "1 1/2" style fractions
  with a small denominator (2, 3, 4);
* number words "zero".."twenty", the tens "thirty".."ninety", compounds ("forty-five",
  "twenty five"), "a hundred" / "one hundred";
* "a" and "an" are 1, "half" / "a half" / "one half" is 0.5, "X and a half" is X + 0.5 and
  "X and a quarter" X + 0.25
  ("one and a half", "2 and a half");
* vague quantities ("a couple", "a few", "several", "some", "many") are *not* numbers: ``None``.

:data:`NUMBER` is a regular-expression fragment (a non-capturing, case-insensitive group) that
matches exactly the tokens :func:`parse_number` accepts, for use inside other patterns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

# --- data -------------------------------------------------------------------------------------

_UNITS: dict[str, int] = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
_TEENS: dict[str, int] = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS: dict[str, int] = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SPECIAL: dict[str, float] = {
    "a": 1,
    "an": 1,
    "half": 0.5,
    "a half": 0.5,
    "one half": 0.5,
    "a hundred": 100,
    "one hundred": 100,
    "hundred": 100,
}
_VULGAR: dict[str, float] = {
    "½": 0.5,
    "¼": 0.25,
    "¾": 0.75,
    "⅓": 1 / 3,
    "⅔": 2 / 3,
}

#: Every single word that is a number.
_WORDS: dict[str, float] = {**_UNITS, **_TEENS, **_TENS}
#: Every word a number token can start with (for fast-fail lookaheads in other patterns).
NUMBER_WORDS: tuple[str, ...] = (*_WORDS, "a", "an", "half", "hundred")


_Trie = dict[str, "_Trie"]


def _render(node: _Trie) -> str:
    branches = [re.escape(char) + _render(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" not in node:
        return body
    return f"{body}?" if len(body) == 1 else f"(?:{body})?"


def alternation(words: Iterable[str]) -> str:
    """A regex alternation of ``words`` as a prefix tree ("t(?:en|w(?:elve|enty|o)|...)").

    The regex engine tries alternatives one by one; sharing prefixes makes a failed attempt cost
    one character test instead of one per word. Optional continuations are greedy, so
    "seventeen" is tried before "seven".
    """
    tree: _Trie = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _render(tree)


_UNIT_WORDS = alternation([w for w in _UNITS if w != "zero"])
_SIMPLE_WORDS = alternation([w for w in _WORDS if w not in _TENS])
_TENS_WORDS = alternation(list(_TENS))
_VULGAR_CHARS = "".join(_VULGAR)

# A word number: "forty-five", "twenty five", "seventeen", "a hundred". A tens word is never
# cut before "-five": "twenty-five" is one number, not the range "20-5".
_WORD_NUMBER = (
    rf"(?:(?:{_TENS_WORDS})(?:[\s-]+(?:{_UNIT_WORDS})|(?!\s*-\s*(?:{_UNIT_WORDS})\b))"
    rf"|(?:a|one)\s+hundred|hundred|{_SIMPLE_WORDS})"
)
# Digits: "1,000", "1.5", "1½", "1 ½", "1 1/2", "1/2", "½".
_DIGIT_NUMBER = (
    rf"(?:\d{{1,3}}(?:,\d{{3}})+(?![\d,])"
    rf"|\d+(?:\.\d+)?(?:\s?[{_VULGAR_CHARS}]|\s[1-3]/[234](?!\d))?"
    rf"|[1-3]/[234](?!\d)"
    rf"|[{_VULGAR_CHARS}])"
)

#: Regular-expression fragment matching one number token (see the module docstring).
#: It carries its own boundaries and case-insensitivity, so it can be dropped into any pattern.
NUMBER = (
    r"(?i:"
    rf"(?<![\w.,/])(?:{_DIGIT_NUMBER}|\b{_WORD_NUMBER}\b)"
    r"(?:[\s-]+and[\s-]+a[\s-]+(?:half|quarter)\b)?"
    r"|\b(?:a\s+half|one\s+half|half)\b"
    r"|\ban?\b"
    r")"
)

#: Regular-expression fragment matching a vague quantity ("several", "a few", "a couple of").
VAGUE = (
    r"(?i:\b(?:several|a\s+few|few|a\s+couple(?:\s+of)?|couple\s+of|many|multiple"
    r"|a\s+number\s+of|some|a\s+matter\s+of)\b)"
)

_WS = re.compile(r"[\s\-]+")
#: Letters that case-insensitive matching takes for ASCII ones ("ſ" for "s", "ı" for "i").
_FOLD = str.maketrans({"ı": "i", "İ": "i"})
_DIGITS = re.compile(
    rf"(?P<int>\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?)"
    rf"(?:\s?(?P<vulgar>[{_VULGAR_CHARS}])|\s(?P<num>[1-3])/(?P<den>[234]))?"
    rf"|(?P<vulgar_alone>[{_VULGAR_CHARS}])"
    rf"|(?P<num_alone>[1-3])/(?P<den_alone>[234])"
)
_AND_A: dict[str, float] = {" and a half": 0.5, " and a quarter": 0.25}


# --- logic ------------------------------------------------------------------------------------


def fold(word: str) -> str:
    """``word`` lower case, with the letters a case-insensitive pattern matched as ASCII made ASCII.

    A pattern compiled with ``re.IGNORECASE`` lets "ſix" match "six"; folding makes the matched
    text compare equal to the word lists again.
    """
    return word.translate(_FOLD).casefold()


def _parse_words(token: str) -> float | None:
    if token in _WORDS:
        return _WORDS[token]
    if token in _SPECIAL:
        return _SPECIAL[token]
    tens, _, unit = token.partition(" ")
    if tens in _TENS and unit in _UNITS and unit != "zero":
        return _TENS[tens] + _UNITS[unit]
    return None


def _parse_digits(token: str) -> float | None:
    match = _DIGITS.fullmatch(token)
    if match is None:
        return None
    whole, vulgar, num, den = match.group("int", "vulgar", "num", "den")
    if whole is None:
        vulgar, num, den = match.group("vulgar_alone", "num_alone", "den_alone")
        value = 0.0
    elif (vulgar is not None or num is not None) and "." in whole:
        return None  # "1.5½" is not a number
    else:
        value = float(whole.replace(",", ""))
    if vulgar is not None:
        value += _VULGAR[vulgar]
    elif num is not None and den is not None:
        value += int(num) / int(den)
    return value


def parse_number(token: str) -> float | None:
    """The value of one number token ("3", "1.5", "½", "forty-five", "an", "one and a half").

    ``None`` when the token is not a number or is vague ("a couple", "a few", "several").
    """
    token = _WS.sub(" ", fold(token)).strip()
    if not token:
        return None
    half = 0.0
    for tail, extra in _AND_A.items():
        if token.endswith(tail):
            token = token[: -len(tail)].strip()
            half = extra
            if not token or token in _SPECIAL:
                return None  # "a and a half", "half and a half": not numbers
            break
    if token[0].isdigit() or token[0] in _VULGAR:
        value = _parse_digits(token)
    else:
        value = _parse_words(token)
    if value is None or not math.isfinite(value):
        return None
    return value + half
