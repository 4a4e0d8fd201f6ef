"""How many SMS segments a body costs, and in which encoding Twilio sends it.

GSM-7 is used when every character is in the GSM 03.38 default alphabet or its extension
table; a single other character turns the whole message into UCS-2. Not modelled: Smart
Encoding's look-alike substitutions (apply them first if the sender uses it) and the smaller
US/Canada toll-free concatenation sizes (152 GSM-7 / 66 UCS-2 per segment).

An empty body counts 0 segments. Twilio reports 1 for a media-only MMS, but that is a property
of the message, not of its text; callers reporting Twilio's NumSegments use max(1, segments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, assert_never

from bridge.models import Channel

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet in code order, 0x00-0x7F, without 0x1B (the escape to the
# extension table, which is not a character of its own).
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Each costs two septets: the escape plus its code in the extension table.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")
GSM7_CHARACTERS: frozenset[str] = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE = 160
GSM7_CONCATENATED = 153
UCS2_SINGLE = 70
UCS2_CONCATENATED = 67


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """Encoding, segment count and length (GSM-7 septets or UTF-16 code units) of a body."""

    encoding: Encoding
    segments: int
    length: int


def is_gsm7(body: str) -> bool:
    """Whether the whole body can be sent in GSM-7."""
    return GSM7_CHARACTERS.issuperset(body)


def _fill(unit_counts: list[int], capacity: int) -> int:
    # A two-unit character (escape pair or surrogate pair) that would straddle a boundary
    # starts the next segment instead, leaving one unit of the current one unused.
    segments, used = 1, 0
    for units in unit_counts:
        if used + units > capacity:
            segments += 1
            used = 0
        used += units
    return segments


def segment_info(body: str) -> SegmentInfo:
    """Encoding, segment count and length of an SMS body; an empty body is 0 segments."""
    if not body:
        return SegmentInfo("GSM-7", 0, 0)
    encoding: Encoding
    if is_gsm7(body):
        encoding, single, concatenated = "GSM-7", GSM7_SINGLE, GSM7_CONCATENATED
        unit_counts = [2 if char in GSM7_EXTENSION else 1 for char in body]
    else:
        encoding, single, concatenated = "UCS-2", UCS2_SINGLE, UCS2_CONCATENATED
        unit_counts = [2 if char > "\uffff" else 1 for char in body]
    length = sum(unit_counts)
    if length <= single:
        return SegmentInfo(encoding, 1, length)
    if length == len(body):
        return SegmentInfo(encoding, -(-length // concatenated), length)
    return SegmentInfo(encoding, _fill(unit_counts, concatenated), length)


def segments_of(channel: Channel, body: str) -> tuple[int, str]:
    """Segments and encoding: SMS counts segments; WhatsApp and RCS carry a text whole in
    UTF-8 (Twilio reports NumSegments 1 for them)."""
    if channel == "sms":
        info = segment_info(body)
        return max(1, info.segments), info.encoding
    if channel == "whatsapp" or channel == "rcs":
        return 1, "UTF-8"
    assert_never(channel)
