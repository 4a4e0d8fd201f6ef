"""MESSAGE bodies: splitting long texts for UDP (RFC 3428 §8) and message/cpim (RFC 3862)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bridge.sip.errors import CpimError, SipParseError
from bridge.sip.headers import TOKEN, ContentType

UDP_BODY_LIMIT = 1300
_CPIM_SPLIT = re.compile(rb"\r?\n\r?\n")


def split_body(text: str, max_bytes: int = UDP_BODY_LIMIT) -> list[str]:
    """Parts of at most `max_bytes` UTF-8 bytes each, numbered `(1/3) ` when there are several.

    Cuts fall between characters, preferably after whitespace and never inside an emoji or a
    character with its combining marks (as far as a cut is possible at all).
    """
    if len(text.encode("utf-8")) <= max_bytes:
        return [text]
    sizes = [len(ch.encode("utf-8")) for ch in text]
    digits = 1
    while True:
        budget = max_bytes - (2 * digits + 4)  # "(" i "/" n ") " with n of `digits` digits
        chunks = _chunks(text, sizes, budget)
        if len(str(len(chunks))) <= digits:
            total = len(chunks)
            return [f"({i}/{total}) {chunk}" for i, chunk in enumerate(chunks, 1)]
        digits = len(str(len(chunks)))


def _chunks(text: str, sizes: list[int], budget: int) -> list[str]:
    out: list[str] = []
    start = 0
    while start < len(text):
        used, end = 0, start
        while end < len(text) and used + sizes[end] <= budget:
            used += sizes[end]
            end += 1
        if end == len(text):
            out.append(text[start:])
            break
        if end == start:
            raise ValueError(f"max_bytes too small to split this text ({budget} bytes a part)")
        cut = _best_cut(text, start, end)
        out.append(text[start:cut])
        start = cut
    return out


def _best_cut(text: str, start: int, end: int) -> int:
    """Where to end a part that may hold text[start:end]: after whitespace if possible."""
    floor = start + (end - start) // 2
    for cut in range(end, floor, -1):
        if text[cut - 1].isspace() and not _joined(text, cut):
            return cut
    for cut in range(end, start, -1):
        if not _joined(text, cut):
            return cut
    return end


def _is_regional(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def _joined(text: str, i: int) -> bool:
    """Whether text[i-1] and text[i] belong to one user-perceived character."""
    before, after = text[i - 1], text[i]
    if before == "\r" and after == "\n":
        return True
    if before == "\u200d" or after == "\u200d" or unicodedata.combining(after):
        return True
    if unicodedata.category(after) in ("Mn", "Me", "Mc"):
        return True
    if "\ufe00" <= after <= "\ufe0f" or "\U000e0000" <= after <= "\U000e01ef":
        return True
    if "\U0001f3fb" <= after <= "\U0001f3ff":
        return True
    if _is_regional(before) and _is_regional(after):
        run = 0
        while i - 1 - run >= 0 and _is_regional(text[i - 1 - run]):
            run += 1
        return run % 2 == 1
    return False


@dataclass(frozen=True, slots=True)
class CpimMessage:
    """The content of a message/cpim body, with its CPIM and MIME headers."""

    content_type: ContentType
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_headers: tuple[tuple[str, str], ...] = ()


def _cpim_headers(block: bytes) -> tuple[tuple[str, str], ...]:
    if not block:
        return ()
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CpimError("CPIM headers are not UTF-8") from exc
    out: list[tuple[str, str]] = []
    for line in re.split(r"\r?\n", text):
        name, colon, value = line.partition(":")
        name = name.strip(" \t")
        if not colon or TOKEN.fullmatch(name) is None:
            raise CpimError("bad CPIM header line")
        if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
            raise CpimError("control character in a CPIM header")
        out.append((name, value.strip(" \t")))
    return tuple(out)


def unwrap_cpim(body: bytes) -> CpimMessage:
    """The encapsulated MIME object of a message/cpim body (RFC 3862 §2-3)."""
    parts = _CPIM_SPLIT.split(body, maxsplit=2)
    if len(parts) != 3:
        raise CpimError("a CPIM body needs message headers, MIME headers and content")
    message_block, mime_block, content = parts
    headers = _cpim_headers(message_block)
    content_headers = _cpim_headers(mime_block)
    kinds = [v for n, v in content_headers if n.lower() == "content-type"]
    if len(kinds) != 1:
        raise CpimError("the encapsulated object needs one Content-Type")
    try:
        content_type = ContentType.parse(kinds[0])
    except SipParseError as exc:
        raise CpimError("bad encapsulated Content-Type") from exc
    lengths = [v for n, v in content_headers if n.lower() == "content-length"]
    if lengths:
        if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,10}", lengths[0]):
            raise CpimError("bad encapsulated Content-Length")
        length = int(lengths[0])
        if length > len(content):
            raise CpimError("encapsulated content shorter than its Content-Length")
        content = content[:length]
    return CpimMessage(content_type, content, headers, content_headers)
