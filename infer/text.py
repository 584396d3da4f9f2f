"""Text normalisation, identical at training and inference time.

The version number is saved in every model folder: a change here that alters the
output must bump it, so an old model is never fed differently-normalised text unknowingly.
"""

from __future__ import annotations

import re
import unicodedata

NORMALIZATION_VERSION = 1

# Zero-width and bidi formatting characters, except ZWJ/ZWNJ, which change how
# Devanagari conjuncts render and are kept (as NFC leaves them).
_INVISIBLE = re.compile("[\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\ufeff\u00ad]")
# C0/C1 control characters other than the whitespace ones handled below.
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# Whitespace runs other than one plain space (a lone space is already what they become).
_SPACES = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
# After _SPACES, blank lines are newlines with single spaces between: the spaces around
# them go with _LINE_BREAK. (Anchored on a newline, not on every space between words.)
_BLANK_LINES = re.compile(r"\n[ \n]*\n")
_LINE_BREAK = re.compile(r" *\n *")
# Anything the first two rules would change: most headlines and articles have none of it.
# One character class (the invisible, control and whitespace characters other than a
# space and a newline) and a plain search for two spaces: four times faster than one
# pattern with alternatives, which tried each of them at every position.
_ODD = re.compile(
    "[\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\ufeff\u00ad"
    "\x00-\x08\x0b\x0e-\x1f\x7f-\x9f"
    + "".join(chr(c) for c in range(0x3001) if chr(c).isspace() and chr(c) not in " \n")
    + "]"
)


def normalize(text: str) -> str:
    """NFC, drop invisible/control characters, collapse whitespace.

    Paragraph breaks survive as one blank line, single line breaks as one newline,
    because the transformer's window splitter and people reading outputs both use them.
    """
    text = _nfc(text.replace("\r\n", "\n").replace("\r", "\n"))
    if "  " in text or _ODD.search(text):
        return _tidy(text)
    # Only single plain spaces and newlines: the first two rules have nothing to do, and
    # the line-break rule only where a space touches a newline (most articles: nowhere).
    if "\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
        if " \n" in text or "\n " in text:
            text = _LINE_BREAK.sub("\n", text)
    return text.strip()


_NUKTA = "\u093c"
# The letters a nukta composes with under NFC (U+0928, U+0930, U+0933), and those NFC
# itself changes (the nukta letters U+0958-U+095F, which it keeps decomposed).
_NUKTA_BASES = frozenset(
    chr(code)
    for code in range(0x900, 0x980)
    if unicodedata.normalize("NFC", chr(code) + _NUKTA) != chr(code) + _NUKTA
)


def _nfc(text: str) -> str:
    """``unicodedata.normalize("NFC", text)``, skipping its slow path where only the
    Devanagari nukta sends it there.

    Python's quick check is unsure of every text holding a nukta (it composes with three
    letters), and then decomposes and recomposes the whole text: 30 times slower a
    character, and a third of gold's Hindi texts have one. Such a text is already NFC when it
    is NFC without its nuktas and no nukta composes with the letter before it or is out
    of canonical order with a mark beside it (``tests/test_text.py`` checks these rules
    against every code point)."""
    if (
        _NUKTA in text
        and unicodedata.is_normalized("NFC", text.replace(_NUKTA, ""))
        and _nuktas_settled(text)
    ):
        return text
    return unicodedata.normalize("NFC", text)


def _nuktas_settled(text: str) -> bool:
    """No nukta NFC would move or compose: none follows (across marks of combining
    class 1-6, which do not block it) a letter it composes with or a mark of a class
    above its 7, and none precedes a mark of a class below 7."""
    combining = unicodedata.combining
    at = text.find(_NUKTA)
    while at != -1:
        before = at - 1
        while before >= 0 and 0 < combining(text[before]) < 7:
            before -= 1
        if before >= 0 and (text[before] in _NUKTA_BASES or combining(text[before]) > 7):
            return False
        if at + 1 < len(text) and 0 < combining(text[at + 1]) < 7:
            return False
        at = text.find(_NUKTA, at + 1)
    return True


def _tidy(text: str) -> str:
    """The rules of :func:`normalize` after NFC, all applied."""
    text = _CONTROL.sub(" ", _INVISIBLE.sub("", text))
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return _LINE_BREAK.sub("\n", text).strip()


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate, which JSON escapes can carry
    but no tokenizer or UTF-8 writer accepts), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"not valid Unicode (a lone surrogate at character {err.start})"
    return None


EMPTY_TEXT = "empty text (nothing left once whitespace, control and invisible characters go)"


def text_problem(text: str) -> str | None:
    """Why a model could not read ``text`` (invalid Unicode, or nothing left once
    normalised), or None: the rule ``Predictor.preprocess`` applies, for readers of
    training data that check rows before any model exists."""
    return unicode_problem(text) or (None if normalize(text) else EMPTY_TEXT)


def lead(text: str, chars: int) -> str:
    """The first ``chars`` characters of ``text``, cut back to the last whole word: what a
    reader sees first (title and opening), where a news article states its subject."""
    if len(text) <= chars:
        return text
    head = text[:chars]
    if not text[chars].isspace():
        cut = max(head.rfind(" "), head.rfind("\n"))
        if cut > 0:
            head = head[:cut]
    return head.rstrip()
