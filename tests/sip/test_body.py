"""Splitting texts for UDP (RFC 3428 §8) and unwrapping message/cpim (RFC 3862)."""

from __future__ import annotations

import re

import pytest

from bridge.sip import CpimError, split_body, unwrap_cpim

PREFIX = re.compile(r"^\((\d+)/(\d+)\) ")


def strip(parts: list[str]) -> str:
    """The text again, prefixes removed, checking they count 1..n of n."""
    out = []
    for i, part in enumerate(parts, 1):
        match = PREFIX.match(part)
        assert match is not None, part[:20]
        assert (int(match.group(1)), int(match.group(2))) == (i, len(parts))
        out.append(part[match.end() :])
    return "".join(out)


def test_a_text_that_fits_is_one_part_without_prefix() -> None:
    assert split_body("hello") == ["hello"]
    exact = "é" * 650  # 1300 bytes
    assert split_body(exact) == [exact]
    assert split_body("") == [""]


def test_one_byte_over_gives_two_numbered_parts() -> None:
    text = "a" * 1301
    parts = split_body(text)
    assert len(parts) == 2
    assert all(len(p.encode()) <= 1300 for p in parts)
    assert parts[0].startswith("(1/2) ") and parts[1].startswith("(2/2) ")
    assert strip(parts) == text


def test_prefers_whitespace() -> None:
    text = ("word " * 400).strip()
    parts = split_body(text, max_bytes=100)
    assert strip(parts) == text
    for part in parts[:-1]:
        assert part.endswith(" "), part[-10:]
        assert len(part.encode()) <= 100


@pytest.mark.parametrize("char", ["é", "中", "😀", "\U0001f468\u200d\U0001f469\u200d\U0001f467"])
def test_multibyte_never_split(char: str) -> None:
    text = char * 700
    for limit in (1300, 97, 64):
        parts = split_body(text, max_bytes=limit)
        assert all(len(p.encode()) <= limit for p in parts)
        assert strip(parts) == text
        for part in parts:
            body = PREFIX.sub("", part)
            assert len(body) % len(char) == 0, "a part boundary fell inside a character"


def test_flags_and_combining_marks_stay_whole() -> None:
    flags = "🇫🇷🇩🇪" * 100
    for part in split_body(flags, max_bytes=50):
        body = PREFIX.sub("", part)
        assert len(body) % 2 == 0
    accents = "e\u0301" * 400
    for part in split_body(accents, max_bytes=50):
        assert not PREFIX.sub("", part).startswith("\u0301")


def test_many_parts_get_wider_prefixes_and_still_fit() -> None:
    text = "x" * 6000
    parts = split_body(text, max_bytes=60)
    assert len(parts) > 99
    assert parts[0].startswith(f"(1/{len(parts)}) ")
    assert all(len(p.encode()) <= 60 for p in parts)
    assert strip(parts) == text


def test_too_small_a_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="too small"):
        split_body("😀" * 10, max_bytes=9)


RFC3862_EXAMPLE = (
    b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n"
    b"To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n"
    b"DateTime: 2000-12-13T13:40:00-08:00\r\n"
    b"Subject: the weather will be fine today\r\n"
    b"\r\n"
    b"Content-type: text/plain;charset=utf-8\r\n"
    b"Content-ID: <1234567890@foo.com>\r\n"
    b"\r\n"
    b"Here is the text of my message.\r\n\r\nWith a blank line in it."
)


def test_unwrap_rfc3862_example() -> None:
    message = unwrap_cpim(RFC3862_EXAMPLE)
    assert message.content_type.mime == "text/plain"
    assert message.content_type.charset == "utf-8"
    assert message.body == b"Here is the text of my message.\r\n\r\nWith a blank line in it."
    assert ("Subject", "the weather will be fine today") in message.headers
    assert ("Content-ID", "<1234567890@foo.com>") in message.content_headers


def test_unwrap_lf_endings_and_content_length() -> None:
    body = b"From: <im:a@b>\nTo: <im:c@d>\n\nContent-Type: text/plain\nContent-Length: 2\n\nhi\r\n"
    message = unwrap_cpim(body)
    assert message.body == b"hi"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"From: <im:a@b>\r\n\r\nno second separator",
        b"From: <im:a@b>\r\n\r\nContent-ID: <x>\r\n\r\nno content type",
        b"From: <im:a@b>\r\n\r\nContent-Type: text\r\n\r\nbad type",
        b"From \xff\r\n\r\nContent-Type: text/plain\r\n\r\nx",
        b"From: <im:a@b>\r\n\r\nContent-Type: text/plain\r\nContent-Length: 99\r\n\r\nshort",
        b"Bad line\r\n\r\nContent-Type: text/plain\r\n\r\nx",
    ],
)
def test_malformed_cpim(body: bytes) -> None:
    with pytest.raises(CpimError):
        unwrap_cpim(body)
