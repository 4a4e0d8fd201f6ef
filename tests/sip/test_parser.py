"""The parser on RFC 4475 torture-test style messages: valid ones parse, invalid ones raise."""

from __future__ import annotations

import textwrap

import pytest

from bridge.sip import (
    Headers,
    Limits,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    StreamFramer,
    build_response,
    parse_message,
    warning_value,
)
from bridge.sip.parser import PING


def sip(text: str, body: bytes = b"") -> bytes:
    """Literal SIP text: dedented, LF → CRLF, indentation of folded lines kept."""
    head = textwrap.dedent(text).strip("\n").replace("\n", "\r\n")
    return head.replace("{length}", str(len(body))).encode() + b"\r\n\r\n" + body


SDP = (
    b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n"
    b"t=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"
)

# RFC 4475 §3.1.1.1 (wsinv): whitespace, folding, compact and mixed-case names everywhere.
WSINV = sip(
    r"""
    INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
    TO :
     sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
    from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
      ;
      tag = 98asjd8
    MaX-fOrWaRdS: 0068
    Call-ID: wsinv.ndaksdj@192.0.2.1
    Content-Length   : {length}
    cseq: 0009
      INVITE
    Via  : SIP  /   2.0
     /UDP
        192.0.2.2;branch=390skdjuw
    s :
    NewFangledHeader:   newfangled value
     continued newfangled value
    UnknownHeaderWithUnusualValue: ;;,,;;,;
    Content-Type: application/sdp
    Route:
     <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
    v:  SIP  / 2.0  / TCP     spindle.example.com   ;
      branch  =   z9hG4bK9ikj8  ,
     SIP  /    2.0   / UDP  192.168.255.111   ; branch=
     z9hG4bK30239
    m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
          newvalue ;
      secondparam ; q = 0.33
    """,
    SDP,
)


def test_wsinv_tortuous_whitespace_parses() -> None:
    message = parse_message(WSINV)
    assert isinstance(message, SipRequest)
    assert message.method == "INVITE"
    assert message.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert message.to_tag == "1918181833n"
    from_ = message.from_
    assert from_ is not None
    assert from_.display_name == 'J Rosenberg \\"'
    assert from_.tag == "98asjd8"
    assert message.max_forwards == 68
    cseq = message.cseq
    assert cseq is not None
    assert (cseq.number, cseq.method) == (9, "INVITE")
    vias = message.vias()
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert message.branch == "390skdjuw"
    assert message.headers.get("Subject") == ""
    assert message.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = NameAddr.parse(message.headers.get("Contact") or "")
    assert contact.display_name == 'Quoted string ""'
    assert dict(contact.params) == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert message.body == SDP


# RFC 4475 §3.1.1.3 (intmeth) less its URI password and its BEL/NUL/DEL bytes, which this
# parser refuses on purpose (see test_deliberately_stricter_than_rfc4475).
INTMETH = sip(
    r"""
    !interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com SIP/2.0
    Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
    To: "BEL:\a DEL:\b" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
    From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="работающий";tag=_token~1'+`*%!-.
    Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{
    CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
    Max-Forwards: 255
    extensionHeader-!.%*+_`'~:大停電
    Content-Length: 0
    """  # noqa: E501
)


def test_intmeth_unusual_tokens_parse() -> None:
    message = parse_message(INTMETH)
    assert isinstance(message, SipRequest)
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    cseq = message.cseq
    assert cseq is not None
    assert cseq.method == message.method
    assert SipUri.parse(message.uri).user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    from_ = message.from_
    assert from_ is not None
    assert from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert from_.tag == "_token~1'+`*%!-."
    assert from_.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert message.headers.get("extensionHeader-!.%*+_`'~") == "大停電"


def test_esc01_escaped_uris() -> None:
    message = parse_message(
        sip(
            """
            INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
            To: sip:%75se%72@example.com
            From: <sip:I%20have%20spaces@example.net>;tag=938
            Max-Forwards: 87
            i: esc01.239409asdfakjkn23onasd0-3234
            CSeq: 234234 INVITE
            Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
            C: application/sdp
            Contact:
              <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
            Content-Length: {length}
            """,
            SDP,
        )
    )
    assert isinstance(message, SipRequest)
    assert SipUri.parse(message.uri).user == "sips:user@example.com"
    to, from_ = message.to, message.from_
    assert to is not None and from_ is not None
    assert to.sip_uri().user == "user"
    assert from_.sip_uri().user == "I have spaces"
    assert message.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    content_type = message.content_type
    assert content_type is not None and content_type.mime == "application/sdp"


def test_escnull_and_compact_content_length() -> None:
    message = parse_message(
        sip(
            """
            REGISTER sip:example.com SIP/2.0
            To: sip:null-%00-null@example.com
            From: sip:null-%00-null@example.com;tag=839923423
            Max-Forwards: 70
            Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
            CSeq: 14398234 REGISTER
            Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
            Contact: <sip:%00@host5.example.com>
            Contact: <sip:%00%00@host5.example.com>
            L:0
            """
        )
    )
    to = message.to
    assert to is not None
    assert to.sip_uri().user == "null-\x00-null"
    assert message.from_tag == "839923423"
    assert message.headers.get_all("contact") == [
        "<sip:%00@host5.example.com>",
        "<sip:%00%00@host5.example.com>",
    ]


def test_lwsdisp_semiuri_transports() -> None:
    message = parse_message(
        sip(
            """
            OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
            To: sip:j_user@example.com
            From: caller<sip:caller@example.com>;tag=323
            Max-Forwards: 70
            Call-ID: semiuri.0ha0isndaksdj
            CSeq: 8 OPTIONS
            Via: SIP/2.0/SCTP t1.example.com;branch=z9hG4bKkdjuw
            Via: SIP/2.0/TLS t2.example.com;branch=z9hG4bKklasjdhf
            Via: SIP/2.0/UNKNOWN t3.example.com;branch=z9hG4bK2980unddj
            Via: SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3;received=2001:db8::9:255
            l: 0
            """
        )
    )
    assert isinstance(message, SipRequest)
    assert SipUri.parse(message.uri).user == "user;par=u@example.net"
    from_ = message.from_
    assert from_ is not None and from_.display_name == "caller"
    vias = message.vias()
    assert [v.transport for v in vias] == ["SCTP", "TLS", "UNKNOWN", "UDP"]
    assert (vias[3].host, vias[3].port, vias[3].params["received"]) == (
        "[2001:db8::9:1]",
        5070,
        "2001:db8::9:255",
    )


def test_longreq_long_values_and_many_vias() -> None:
    name = "x" * 4000
    vias = "\n".join(
        f"Via: SIP/2.0/TCP sip{i}.example.com:5060;branch=z9hG4bK{i:04d}" for i in range(40)
    )
    data = sip(
        f"""
INVITE sip:user@example.com SIP/2.0
To: "I have a user name of {name} proportion" <sip:user@example.com:6000>
From: sip:caller@example.net;tag={"9" * 1000}
{vias}
Call-ID: longreq.one{"really" * 200}longcallid
CSeq: 3882340 INVITE
Max-Forwards: 70
Content-Length: 0
"""
    )
    message = parse_message(data)
    assert len(message.vias()) == 40
    to = message.to
    assert to is not None and to.display_name is not None and len(to.display_name) > 4000


def test_responses_unusual_reason_and_no_reason() -> None:
    unreason = parse_message(
        sip(
            """
            SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое
            Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
            Call-ID: unreason.1234ksdfak3j2erwedfsASdf
            CSeq: 35 INVITE
            From: sip:user@example.com;tag=11141343
            To: sip:user@example.edu;tag=2229
            Content-Length: 0
            """
        )
    )
    assert isinstance(unreason, SipResponse)
    assert unreason.status == 200
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse_message(b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n")
    assert isinstance(noreason, SipResponse)
    assert (noreason.status, noreason.reason) == (100, "")


def test_multiple_vias_in_order_across_fields_and_commas() -> None:
    message = parse_message(
        sip(
            """
            MESSAGE sip:a@b SIP/2.0
            Via: SIP/2.0/UDP one;branch=z9hG4bK1, SIP/2.0/UDP two;branch=z9hG4bK2
            v: SIP/2.0/TCP three:5070;branch=z9hG4bK3
            VIA: SIP/2.0/UDP four;branch=z9hG4bK4;rport
            f: <sip:a@b>;tag=1
            t: <sip:c@d>
            i: 1@b
            CSeq: 1 MESSAGE
            c: text/plain
            l: 2
            """,
            b"hi",
        )
    )
    assert [v.host for v in message.vias()] == ["one", "two", "three", "four"]
    assert "rport" in message.vias()[3].params
    top = message.top_via
    assert top is not None and top.host == "one"


def test_datagram_without_content_length_takes_the_rest_and_stream_refuses() -> None:
    data = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\nhello"
    assert parse_message(data).body == b"hello"
    with pytest.raises(SipParseError):
        parse_message(data, stream=True)


def test_datagram_bytes_beyond_content_length_are_discarded() -> None:
    data = b"MESSAGE sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabcdef"
    assert parse_message(data).body == b"abc"


def test_leading_crlfs_are_ignored() -> None:
    assert isinstance(parse_message(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n"), SipRequest)


INVALID = {
    # RFC 4475 §3.1.2.1 badinv01: extraneous separators
    "badinv01": b"OPTIONS sip:user@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,"
    b"\r\nl: 0\r\n\r\n",
    # §3.1.2.2 clerr: Content-Length larger than the message
    "clerr": b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 9999\r\n\r\nshort",
    # §3.1.2.3 ncl: negative Content-Length
    "ncl": b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n",
    # §3.1.2.4 scalar02: overlarge scalar values
    "scalar02-cseq": b"REGISTER sip:a@b SIP/2.0\r\nCSeq: 36893488147419103232 REGISTER"
    b"\r\nl: 0\r\n\r\n",
    "scalar02-max-forwards": b"REGISTER sip:a@b SIP/2.0\r\nMax-Forwards: 300\r\nl: 0\r\n\r\n",
    # §3.1.2.19 bigcode
    "bigcode": b"SIP/2.0 4294967301 better not break the receiver\r\nl: 0\r\n\r\n",
    "status-too-small": b"SIP/2.0 099 Nope\r\nl: 0\r\n\r\n",
    # §3.1.2.6 quotbal: unterminated quoted display name
    "quotbal": b'MESSAGE sip:a@b SIP/2.0\r\nTo: "Mr. J. User <sip:j.user@example.com>'
    b"\r\nl: 0\r\n\r\n",
    # §3.1.2.7 ltgtruri: <> around the Request-URI
    "ltgtruri": b"INVITE <sip:user@example.com> SIP/2.0\r\nl: 0\r\n\r\n",
    # §3.1.2.8 lwsruri: LWS inside the Request-URI
    "lwsruri": b"INVITE sip:user@example.com; lr SIP/2.0\r\nl: 0\r\n\r\n",
    # §3.1.2.9 lwsstart: several SP between request-line elements
    "lwsstart": b"INVITE  sip:user@example.com  SIP/2.0\r\nl: 0\r\n\r\n",
    # §3.1.2.10 trws: SP at the end of the request line
    "trws": b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\nl: 0\r\n\r\n",
    # §3.1.2.14 badaspec: spaces within an addr-spec
    "badaspec": b'OPTIONS sip:a@b SIP/2.0\r\nTo: "Watson, Thomas" < sip:t.watson@example.org >'
    b"\r\nl: 0\r\n\r\n",
    # §3.1.2.15 baddn: non-token characters in an unquoted display name
    "baddn": b"OPTIONS sip:a@b SIP/2.0\r\nFrom: Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43"
    b"\r\nl: 0\r\n\r\n",
    # multi01: several values for single-valued headers
    "multi-call-id": b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: a@b\r\ni: c@d\r\nl: 0\r\n\r\n",
    "multi-cseq": b"MESSAGE sip:a@b SIP/2.0\r\nCSeq: 1 MESSAGE\r\nCSeq: 2 MESSAGE\r\nl: 0\r\n\r\n",
    "conflicting-content-length": b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab",
    "password-in-uri": b"MESSAGE sip:alice:secret@b SIP/2.0\r\nl: 0\r\n\r\n",
    "nul-in-header": b"MESSAGE sip:a@b SIP/2.0\r\nSubject: a\x00b\r\nl: 0\r\n\r\n",
    "bare-lf-in-header": b"MESSAGE sip:a@b SIP/2.0\r\nSubject: a\nb\r\nl: 0\r\n\r\n",
    "not-utf8": b"MESSAGE sip:a@b SIP/2.0\r\nSubject: \xff\xfe\r\nl: 0\r\n\r\n",
    "no-empty-line": b"MESSAGE sip:a@b SIP/2.0\r\nl: 0\r\n",
    "fold-after-start-line": b"MESSAGE sip:a@b SIP/2.0\r\n folded\r\nl: 0\r\n\r\n",
    "header-without-colon": b"MESSAGE sip:a@b SIP/2.0\r\nSubject hi\r\nl: 0\r\n\r\n",
    "bad-via-protocol": b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/3.0/UDP h\r\nl: 0\r\n\r\n",
    "via-port-range": b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:70000\r\nl: 0\r\n\r\n",
    "bad-ipv6": b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [::g]:5060\r\nl: 0\r\n\r\n",
    "unicode-digits": "OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: \u0667\u0660\r\n\r\n".encode(),
    "repeated-tag": b"MESSAGE sip:a@b SIP/2.0\r\nFrom: <sip:a@b>;tag=1;tag=2\r\nl: 0\r\n\r\n",
    "empty": b"",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_raise_sip_parse_error(name: str) -> None:
    with pytest.raises(SipParseError):
        parse_message(INVALID[name])


def test_deliberately_stricter_than_rfc4475() -> None:
    """RFC 4475 calls these valid; we refuse URI passwords and raw control bytes on purpose."""
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:user:pass@example.com SIP/2.0\r\nl: 0\r\n\r\n")
    with pytest.raises(SipParseError):
        parse_message(b'OPTIONS sip:a@b SIP/2.0\r\nTo: "BEL:\\\x07" <sip:a@b>\r\nl: 0\r\n\r\n')


def test_limits_are_enforced() -> None:
    small = Limits(max_message_bytes=200, max_headers=3, max_line_bytes=60)
    with pytest.raises(SipParseError, match="too large"):
        parse_message(b"MESSAGE sip:a@b SIP/2.0\r\n\r\n" + b"x" * 300, limits=small)
    with pytest.raises(SipParseError, match="too many headers"):
        parse_message(
            b"OPTIONS sip:a@b SIP/2.0\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n", limits=small
        )
    with pytest.raises(SipParseError, match="line too long"):
        parse_message(
            b"OPTIONS sip:a@b SIP/2.0\r\nSubject: " + b"y" * 80 + b"\r\n\r\n", limits=small
        )
    too_many_vias = b"".join(b"Via: SIP/2.0/UDP h;branch=z9hG4bK%d\r\n" % i for i in range(71))
    with pytest.raises(SipParseError, match="Via"):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n" + too_many_vias + b"\r\n")


def test_stream_framer_splits_joins_and_pings() -> None:
    one = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: 1@h\r\nContent-Length: 5\r\n\r\nhello"
    two = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: 2@h\r\nContent-Length: 0\r\n\r\n"
    framer = StreamFramer()
    messages, error = framer.feed(one + b"\r\n\r\n" + two)
    assert error is None
    assert [getattr(m, "call_id", m) for m in messages] == ["1@h", PING, "2@h"]
    got = []
    for byte in one:
        out, error = framer.feed(bytes([byte]))
        assert error is None
        got += out
    assert len(got) == 1 and got[0] != PING
    assert framer.buffered == 0
    _, error = framer.feed(b"MESSAGE sip:a@b SIP/2.0\r\nl: 999999\r\n\r\n")
    assert error is not None


def test_serializer_round_trip_and_content_length() -> None:
    message = parse_message(WSINV)
    again = parse_message(message.to_bytes(), stream=True)
    assert isinstance(again, SipRequest)
    assert again.vias() == message.vias()
    assert again.body == message.body
    assert again.headers.get("Content-Length") == str(len(SDP))


def test_serializer_refuses_header_injection() -> None:
    request = SipRequest("MESSAGE", "sip:a@b", Headers([("Subject", "hi\r\nEvil: 1")]))
    with pytest.raises(ValueError, match="safely"):
        request.to_bytes()


def test_build_response_copies_the_rfc3261_8_2_6_headers() -> None:
    request = parse_message(WSINV)
    assert isinstance(request, SipRequest)
    response = build_response(
        request, 404, headers=[("Warning", warning_value("b.example", "no_route"))]
    )
    assert (response.status, response.reason) == (404, "Not Found")
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert response.headers.get("From") == request.headers.get("From")
    assert response.headers.get("Call-ID") == request.headers.get("Call-ID")
    assert response.headers.get("CSeq") == request.headers.get("CSeq")
    assert response.to_tag == "1918181833n"  # kept: the request already had one
    assert response.headers.get("Warning") == '399 b.example "no_route"'
    untagged = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\nl: 0\r\n\r\n")
    assert isinstance(untagged, SipRequest)
    tagged = build_response(untagged, 200, to_tag="xyz")
    assert tagged.headers.get("To") == "<sip:a@b>;tag=xyz"
    assert build_response(untagged, 100).to_tag is None
    assert build_response(untagged, 500).to_tag
