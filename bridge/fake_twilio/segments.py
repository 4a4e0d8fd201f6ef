"""SMS segment counting (GSM-7 or UCS-2), to fill `num_segments` like Twilio does."""

from __future__ import annotations

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension-table characters cost two septets (escape + char).
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def gsm7_length(body: str) -> int | None:
    """Septets needed for `body` in GSM-7, or None when it needs UCS-2."""
    length = 0
    for char in body:
        if char in GSM7_BASIC:
            length += 1
        elif char in GSM7_EXTENDED:
            length += 2
        else:
            return None
    return length


def count_segments(body: str) -> int:
    """Number of SMS segments a body occupies (at least 1)."""
    septets = gsm7_length(body)
    if septets is not None:
        single, multi, units = 160, 153, septets
    else:
        # UCS-2 counts UTF-16 code units, so characters outside the BMP take two.
        single, multi, units = 70, 67, len(body.encode("utf-16-le")) // 2
    if units <= single:
        return 1
    return -(-units // multi)
