from hypothesis import given, settings
from hypothesis import strategies as st

from topictone.infer.text import normalize


def test_nfc_composes_devanagari():
    # NA + NUKTA composes to NNNA under NFC; an identity function would keep two code points.
    assert normalize("\u0928\u093c") == "\u0929"
    # KA + NUKTA is a composition exclusion: NFC keeps it decomposed, so must we.
    assert normalize("\u0958") == "\u0915\u093c"
    assert normalize("e\u0301") == "\u00e9"


def test_invisible_and_control_characters_are_removed():
    assert normalize("de\u200bfence\ufeff\x00 news\x07") == "defence news"


def test_zwj_and_zwnj_are_kept_for_devanagari():
    assert "\u200d" in normalize("क्\u200dष") and "\u200c" in normalize("क्\u200cष")


def test_whitespace_collapses_but_paragraphs_survive():
    text = "  Army  tests\tmissile \r\n\r\n\n second   paragraph\nline  "
    assert normalize(text) == "Army tests missile\n\nsecond paragraph\nline"


def test_idempotent():
    text = "  भारत\u200b और   इजरायल \n\n\n समझौता "
    assert normalize(normalize(text)) == normalize(text)


# Whitespace and invisible characters, and what NFC acts on around a nukta: the letters it
# composes with (न र ळ), a precomposed and an excluded nukta letter, marks of combining
# class 1 (U+0334), 9 (virama), 220 and 230.
@settings(max_examples=1000, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            " \t\n\r\x0b\x0c\x00\x1f\u00a0\u200b\u00adaéक़ ानरळ\u093c\u094d\u0334\u0951\u0952"
            "\u0301\u0929\u0958"
        )
    )
)
def test_the_shortcuts_change_nothing(text):
    """Clean lines and clean multi-line texts skip rules; every rule applied gives the same."""
    import unicodedata

    from topictone.infer.text import _tidy

    expected = _tidy(unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")))
    assert normalize(text) == expected


def test_the_nukta_rules_hold_for_every_code_point():
    """_nfc skips NFC for a nukta text that is NFC without its nuktas, unless a nukta
    follows a letter in _NUKTA_BASES or a mark of combining class above 7, or precedes
    one of class 1-6. Exhaustively: no other character before or after a nukta makes
    NFC change anything."""
    import unicodedata

    from topictone.infer.text import _NUKTA, _NUKTA_BASES

    nfc, ccc = unicodedata.normalize, unicodedata.combining
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    settled = [c for c in chars if nfc("NFC", c) == c]
    before = [c + _NUKTA for c in settled if c not in _NUKTA_BASES and ccc(c) <= 7]
    after = ["\u0915" + _NUKTA + c for c in settled if not 0 < ccc(c) < 7]
    assert [s for s in before + after if nfc("NFC", s) != s] == []
    assert {"\u0928", "\u0930", "\u0933"} <= _NUKTA_BASES
