"""SMS encoding and segment counts: the 160/153 and 70/67 boundaries, escapes and surrogates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.twilio.encoding import (
    GSM7_BASIC,
    GSM7_CHARACTERS,
    GSM7_EXTENSION,
    SegmentInfo,
    is_gsm7,
    segment_info,
)

EMOJI = "\U0001f600"
CYRILLIC = "\u0436"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("a", SegmentInfo("GSM-7", 1, 1), id="one-char"),
        pytest.param("a" * 160, SegmentInfo("GSM-7", 1, 160), id="gsm-160"),
        pytest.param("a" * 161, SegmentInfo("GSM-7", 2, 161), id="gsm-161"),
        pytest.param("a" * 306, SegmentInfo("GSM-7", 2, 306), id="gsm-306"),
        pytest.param("a" * 307, SegmentInfo("GSM-7", 3, 307), id="gsm-307"),
        pytest.param("a" * 1600, SegmentInfo("GSM-7", 11, 1600), id="gsm-1600"),
        pytest.param(CYRILLIC * 70, SegmentInfo("UCS-2", 1, 70), id="ucs2-70"),
        pytest.param(CYRILLIC * 71, SegmentInfo("UCS-2", 2, 71), id="ucs2-71"),
        pytest.param(CYRILLIC * 134, SegmentInfo("UCS-2", 2, 134), id="ucs2-134"),
        pytest.param(CYRILLIC * 135, SegmentInfo("UCS-2", 3, 135), id="ucs2-135"),
    ],
)
def test_boundaries(body: str, expected: SegmentInfo) -> None:
    assert segment_info(body) == expected


def test_empty_body_is_zero_segments() -> None:
    assert segment_info("") == SegmentInfo("GSM-7", 0, 0)


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_char_costs_two_septets(char: str) -> None:
    assert segment_info("a" * 158 + char) == SegmentInfo("GSM-7", 1, 160)
    assert segment_info("a" * 159 + char) == SegmentInfo("GSM-7", 2, 161)


def test_form_feed_is_an_extension_char() -> None:
    assert segment_info("\f") == SegmentInfo("GSM-7", 1, 2)


def test_escape_pair_is_not_split_across_segments() -> None:
    # 152 + 2 does not fit in 153, so the pair opens segment two and pushes text into a third.
    assert segment_info("a" * 152 + "{" + "a" * 152) == SegmentInfo("GSM-7", 3, 306)
    # Ending exactly on the boundary fits.
    assert segment_info("a" * 151 + "{" + "a" * 153) == SegmentInfo("GSM-7", 2, 306)


def test_surrogate_pair_is_not_split_across_segments() -> None:
    assert segment_info(CYRILLIC * 66 + EMOJI + CYRILLIC * 66) == SegmentInfo("UCS-2", 3, 134)
    assert segment_info(CYRILLIC * 65 + EMOJI + CYRILLIC * 67) == SegmentInfo("UCS-2", 2, 134)


def test_emoji_counts_two_code_units() -> None:
    assert segment_info(EMOJI) == SegmentInfo("UCS-2", 1, 2)
    assert segment_info(EMOJI * 35) == SegmentInfo("UCS-2", 1, 70)
    # 33 emoji fill 66 of 67 units; the 34th cannot be split, so 36 take 2 segments, 67 take 3.
    assert segment_info(EMOJI * 36) == SegmentInfo("UCS-2", 2, 72)
    assert segment_info(EMOJI * 66) == SegmentInfo("UCS-2", 2, 132)
    assert segment_info(EMOJI * 67) == SegmentInfo("UCS-2", 3, 134)


def test_one_non_gsm_char_switches_the_whole_message() -> None:
    assert segment_info("a" * 100) == SegmentInfo("GSM-7", 1, 100)
    assert segment_info("a" * 100 + CYRILLIC) == SegmentInfo("UCS-2", 2, 101)
    # In UCS-2 an extension char is an ordinary single code unit.
    assert segment_info("{" * 69 + CYRILLIC) == SegmentInfo("UCS-2", 1, 70)


@pytest.mark.parametrize(
    "char", ["`", "\t", "\x1b", "\x00", "ç", "á", "Ç\u0327", "\u2019", "\u00a0", "\ufeff"]
)
def test_characters_outside_gsm7(char: str) -> None:
    assert segment_info("a" + char).encoding == "UCS-2"


@pytest.mark.parametrize("char", ["@", "£", "Ç", "Δ", "ß", "§", "¿", "à", "\n", "\r", "_", "€"])
def test_characters_inside_gsm7(char: str) -> None:
    assert segment_info(char).encoding == "GSM-7"


def test_alphabet_sizes() -> None:
    # 128 code points in the default alphabet minus the escape; 10 in the extension table.
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


# --- properties -----------------------------------------------------------------------------

_PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
_gsm_text = st.text(alphabet=sorted(GSM7_CHARACTERS), max_size=700)
_any_text = st.one_of(
    _gsm_text,
    st.text(max_size=400),
    st.lists(st.sampled_from(["a", "{", CYRILLIC, EMOJI]), max_size=400).map("".join),
)


def _expected_length(body: str) -> int:
    if is_gsm7(body):
        return len(body) + sum(char in GSM7_EXTENSION for char in body)
    return len(body.encode("utf-16-le")) // 2


@_PROPERTY_SETTINGS
@given(body=_gsm_text, cut=st.integers(min_value=0, max_value=700))
def test_gsm_segments_never_decrease_as_text_grows(body: str, cut: int) -> None:
    prefix = body[: min(cut, len(body))]
    assert segment_info(prefix).segments <= segment_info(body).segments


@_PROPERTY_SETTINGS
@given(body=st.text(max_size=300))
def test_ucs2_exactly_when_some_char_is_outside_gsm7(body: str) -> None:
    info = segment_info(body)
    assert (info.encoding == "UCS-2") == any(char not in GSM7_CHARACTERS for char in body)


@_PROPERTY_SETTINGS
@given(body=_any_text)
def test_length_and_segment_bounds(body: str) -> None:
    info = segment_info(body)
    assert info.length == _expected_length(body)
    single, per_segment = (160, 153) if info.encoding == "GSM-7" else (70, 67)
    if info.length == 0:
        assert info.segments == 0
    elif info.length <= single:
        assert info.segments == 1
    else:
        # Unsplittable pairs waste at most one unit per segment.
        assert -(-info.length // per_segment) <= info.segments
        assert info.segments <= -(-info.length // (per_segment - 1))


@_PROPERTY_SETTINGS
@given(body=st.text(alphabet=sorted(GSM7_BASIC), min_size=1, max_size=700))
def test_basic_gsm_text_follows_the_simple_formula(body: str) -> None:
    n = len(body)
    expected = 1 if n <= 160 else -(-n // 153)
    assert segment_info(body) == SegmentInfo("GSM-7", expected, n)
