"""SIP URIs, name-addr values and the `proxy` setting."""

from __future__ import annotations

import pytest

from bridge.sip import Destination, NameAddr, SipParseError, SipUri, parse_proxy, resolve


def test_sip_uri_parts() -> None:
    uri = SipUri.parse("sip:+1%20555@[2001:db8::1]:5070;transport=TCP;lr?subject=hi&x=y")
    assert uri.user == "+1 555"
    assert (uri.host, uri.address, uri.port) == ("[2001:db8::1]", "2001:db8::1", 5070)
    assert uri.transport == "tcp"
    assert "lr" in uri.params and uri.params["lr"] is None
    assert uri.headers == (("subject", "hi"), ("x", "y"))
    assert not uri.secure
    assert str(uri) == "sip:+1%20555@[2001:db8::1]:5070;transport=TCP;lr?subject=hi&x=y"


def test_sips_and_host_only() -> None:
    uri = SipUri.parse("SIPS:pbx.example.com")
    assert uri.secure and uri.user is None and uri.port is None
    assert str(uri) == "sips:pbx.example.com"


def test_user_percent_decoding_and_encoding_round_trip() -> None:
    uri = SipUri.parse("sip:J%C3%BCrgen%40home@example.com")
    assert uri.user == "Jürgen@home"
    assert SipUri.parse(str(uri)) == uri
    assert str(SipUri("example.com", user="a b;c")) == "sip:a%20b;c@example.com"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice:secret@example.com",  # passwords are refused
        "tel:+15551234567",  # not sip:
        "sip:",
        "sip:@example.com",
        "sip:a@exa mple.com",
        "sip:a@example.com:0",
        "sip:a@example.com:65536",
        "sip:a@[::zz]",
        "sip:a@example.com;;lr",
        "sip:a@example.com;lr;lr",
        "sip:%zz@example.com",
        "sip:%ff@example.com",  # not UTF-8
        "sip:a@example.com?noequals",
    ],
)
def test_bad_sip_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_name_addr_forms() -> None:
    quoted = NameAddr.parse('"+15551234567" <sip:+15551234567@acme.example.com>;tag=abc')
    assert quoted.display_name == "+15551234567"
    assert quoted.tag == "abc"
    assert quoted.sip_uri().user == "+15551234567"
    assert str(quoted) == '"+15551234567" <sip:+15551234567@acme.example.com>;tag=abc'
    tokens = NameAddr.parse("Alice  Smith <sip:alice@example.com>")
    assert tokens.display_name == "Alice Smith" and tokens.tag is None
    bare = NameAddr.parse("sip:bob@example.com;tag=7")
    assert bare.uri == "sip:bob@example.com" and bare.tag == "7"
    tel = NameAddr.parse("<tel:+15551234567>")
    assert tel.uri == "tel:+15551234567"
    escaped = NameAddr("sip:a@b", 'a "quoted" \\ name')
    assert NameAddr.parse(str(escaped)).display_name == 'a "quoted" \\ name'
    assert NameAddr.parse(str(bare.with_tag("8"))).tag == "8"


def test_name_addr_refuses_injection() -> None:
    with pytest.raises(ValueError, match="control"):
        str(NameAddr("sip:a@b", "evil\r\nVia: x"))


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("sip:10.0.0.5:5060;transport=udp", Destination("10.0.0.5", 5060, "udp")),
        ("sip:pbx.example.com;transport=tcp", Destination("pbx.example.com", 5060, "tcp")),
        ("sip:pbx.example.com;transport=TCP;lr", Destination("pbx.example.com", 5060, "tcp")),
        ("sip:10.0.0.5", Destination("10.0.0.5", 5060, "udp")),
        (" sip:[2001:db8::5]:5080 ", Destination("2001:db8::5", 5080, "udp")),
    ],
)
def test_parse_proxy(setting: str, expected: Destination) -> None:
    assert parse_proxy(setting) == expected


@pytest.mark.parametrize(
    "setting",
    [
        "sips:pbx.example.com",
        "sip:pbx.example.com;transport=tls",
        "sip:101@pbx.example.com",
        "sip:pbx.example.com;maddr=1.2.3.4",
        "10.0.0.5:5060",
    ],
)
def test_parse_proxy_refuses(setting: str) -> None:
    with pytest.raises(SipParseError):
        parse_proxy(setting)


async def test_resolve_uses_the_event_loop_resolver() -> None:
    literal = Destination("10.0.0.5", 5060)
    assert await resolve(literal) is literal
    resolved = await resolve(Destination("localhost", 5070, "tcp"))
    assert resolved.is_resolved and resolved.port == 5070 and resolved.transport == "tcp"
