"""Channels (design §12), the pure parts: addresses, WhatsApp sender choice, conversations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bridge.events import conversation_key
from bridge.models import (
    Channel,
    ConfigId,
    Extension,
    Message,
    MessageId,
    OutboundRule,
    SmsNumber,
    TenantId,
    TrunkId,
    channel_address,
    split_address,
)
from bridge.routing import ConfigView, NoSender, OutboundPlan, route_outbound

WA = "+15551230002"
CONFIG = ConfigView(
    id=ConfigId("cfg_1"),
    enabled=True,
    sender_id="ACME",
    messaging_service_sid="MG" + "0" * 32,
    numbers=frozenset({"+15551230001", WA}),
    allowed_countries=frozenset({"US", "GB"}),
    whatsapp_numbers=frozenset({WA, "+15551230003"}),
)


@pytest.mark.parametrize(
    ("raw", "channel", "address"),
    [
        ("+15557654321", "sms", "+15557654321"),
        ("whatsapp:+15557654321", "whatsapp", "+15557654321"),
        ("WhatsApp:+15557654321", "whatsapp", "+15557654321"),
        ("rcs:+15557654321", "rcs", "+15557654321"),
        ("rcs:acme_agent", "rcs", "acme_agent"),
        ("messenger:123", "sms", "messenger:123"),
        ("ACME", "sms", "ACME"),
    ],
)
def test_addresses_split_into_channel_and_address(raw: str, channel: str, address: str) -> None:
    assert split_address(raw) == (channel, address)


def test_addresses_are_written_back_as_twilio_writes_them() -> None:
    assert channel_address("sms", "+15557654321") == "+15557654321"
    assert channel_address("whatsapp", "+15557654321") == "whatsapp:+15557654321"
    assert channel_address("rcs", "acme_agent") == "rcs:acme_agent"


def plan(extension: Extension | None, rule: OutboundRule | None = None) -> OutboundPlan:
    """A WhatsApp send to the UK, where SMS would take the configuration's sender_id."""
    return route_outbound(
        [rule or OutboundRule(name="all", trunks=[TrunkId("trk_1")])],
        from_extension="101",
        dialled="+442079460000",
        default_country="US",
        extension=extension,
        configs={TrunkId("trk_1"): CONFIG},
        channel="whatsapp",
    )


def test_whatsapp_never_uses_an_alphanumeric_sender_or_a_service() -> None:
    chosen = plan(Extension(extension="101", dids=[WA], default_did=WA))
    assert (chosen.channel, chosen.sender_kind, chosen.sender) == ("whatsapp", "number", WA)


def test_whatsapp_picks_the_extensions_whatsapp_did_then_the_only_whatsapp_number() -> None:
    sms_only = Extension(extension="101", dids=["+15551230001"])
    with pytest.raises(NoSender):
        plan(sms_only)
    single = replace(CONFIG, whatsapp_numbers=frozenset({WA}))
    chosen = route_outbound(
        [OutboundRule(name="all", trunks=[TrunkId("trk_1")])],
        from_extension="101",
        dialled="+442079460000",
        default_country="US",
        extension=sms_only,
        configs={TrunkId("trk_1"): single},
        channel="whatsapp",
    )
    assert chosen.sender == WA
    assert "only WhatsApp number" in chosen.explanation[-1]


def test_a_rule_sender_that_is_not_a_whatsapp_number_is_passed_over() -> None:
    rule = OutboundRule(name="all", trunks=[TrunkId("trk_1")], sender="+15551230001")
    chosen = plan(Extension(extension="101", dids=[WA]), rule)
    assert chosen.sender == WA
    assert any("not a WhatsApp number" in line for line in chosen.explanation)


def test_a_numbers_channels() -> None:
    only_whatsapp = SmsNumber(number="+15551230003", channels=["whatsapp"])
    both = SmsNumber(number=WA, channels=["sms", "whatsapp"])
    assert (only_whatsapp.channels, both.channels) == (["whatsapp"], ["sms", "whatsapp"])
    assert SmsNumber(number="+15551230001").channels == ["sms"]
    with pytest.raises(ValidationError):
        SmsNumber(number="+15551230001", channels=["sms", "sms"])
    with pytest.raises(ValidationError):
        SmsNumber(number="55555", type="short_code", channels=["whatsapp"])
    with pytest.raises(ValidationError):
        SmsNumber(number="+15551230001", channels=[])


def message(channel: Channel, direction: str = "inbound") -> Message:
    now = datetime.now(UTC)
    return Message.model_validate(
        {
            "id": MessageId("msg_1"),
            "tenant_id": TenantId("ten_1"),
            "config_id": None,
            "direction": direction,
            "status": "received" if direction == "inbound" else "sent",
            "channel": channel,
            "from": "+15557654321" if direction == "inbound" else "+15551230001",
            "to": "+15551230001" if direction == "inbound" else "+15557654321",
            "body": "",
            "extensions": [],
            "segments": 1,
            "encoding": "UTF-8",
            "media": [],
            "twilio_sid": None,
            "error_code": None,
            "error_message": None,
            "created_at": now,
            "updated_at": now,
        }
    )


def test_an_sms_and_a_whatsapp_thread_with_one_person_are_two_conversations() -> None:
    sms, whatsapp = message("sms"), message("whatsapp")
    # The SMS key is the one events had before channels: those queued across an upgrade
    # keep their order.
    assert conversation_key(sms) == "ten_1:+15551230001:+15557654321"
    assert conversation_key(whatsapp) == "ten_1:whatsapp:+15551230001:+15557654321"
    assert conversation_key(message("whatsapp", "outbound")) == conversation_key(whatsapp)
    # RCS is the SMS thread as a Messaging Service delivers it.
    assert conversation_key(message("rcs")) == conversation_key(sms)
