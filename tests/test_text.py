from hypothesis import given, settings
from hypothesis import strategies as st

from infer.text import normalize


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


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\x00\x1f\u00a0\u200b\u00adaéक़ ा")))
def test_the_shortcuts_change_nothing(text):
    """Clean lines and clean multi-line texts skip rules; every rule applied gives the same."""
    import unicodedata

    from infer.text import _tidy

    expected = _tidy(unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")))
    assert normalize(text) == expected
