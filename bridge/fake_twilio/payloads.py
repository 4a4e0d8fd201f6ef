"""Form parameters of the webhooks the fake sends: status callbacks and inbound messages."""

from __future__ import annotations

from .formats import API_VERSION, country_of
from .models import InboundSpec
from .records import Pairs, utcnow
from .state import Message
from .validation import channel_of


def status_params(message: Message, status: str, error_code: int | None) -> Pairs:
    """Parameters of a status callback for `message` reaching `status`."""
    params: Pairs = [
        ("SmsSid", message.sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", message.to),
        ("MessageSid", message.sid),
        ("AccountSid", message.account_sid),
        ("From", message.from_ or ""),
        ("ApiVersion", API_VERSION),
    ]
    if message.messaging_service_sid:
        params.insert(5, ("MessagingServiceSid", message.messaging_service_sid))
    if status in ("failed", "undelivered") and error_code is not None:
        params.insert(0, ("ErrorCode", str(error_code)))
    channel = channel_of(message.to)
    if channel is None:
        if status in ("delivered", "undelivered"):
            params.append(("RawDlrDoneDate", utcnow().strftime("%y%m%d%H%M")))
        return params
    # WhatsApp and RCS callbacks name their channel; a read receipt says so (twilio.md §5).
    params.append(("ChannelPrefix", channel))
    params.append(("ChannelInstallSid", "XE" + message.account_sid[2:]))
    params.append(("ChannelToAddress", message.to.partition(":")[2]))
    if status == "read":
        params.append(("EventType", "READ"))
    if status in ("failed", "undelivered") and message.error_message:
        params.append(("ChannelStatusMessage", message.error_message))
    return params


def inbound_params(message: Message, spec: InboundSpec, base_url: str) -> Pairs:
    """Parameters of an inbound-message webhook, in the order Twilio tends to send them."""
    from_ = message.from_ or ""
    geo = _geo(from_, message.to, spec) if spec.include_geo else {}
    params: list[tuple[str, str | None]] = [
        ("ToCountry", geo.get("ToCountry")),
        ("ToState", geo.get("ToState")),
        ("SmsMessageSid", message.sid),
        ("NumMedia", str(len(message.media))),
        ("ToCity", geo.get("ToCity")),
        ("FromZip", geo.get("FromZip")),
        ("SmsSid", message.sid),
        ("FromState", geo.get("FromState")),
        ("SmsStatus", "received"),
        ("FromCity", geo.get("FromCity")),
        ("Body", message.body),
        ("FromCountry", geo.get("FromCountry")),
        ("To", message.to),
        ("MessagingServiceSid", message.messaging_service_sid),
        ("ToZip", geo.get("ToZip")),
        ("NumSegments", str(message.num_segments)),
        ("MessageSid", message.sid),
        ("AccountSid", message.account_sid),
        ("From", from_),
        ("ApiVersion", API_VERSION),
    ]
    present: Pairs = [(name, value) for name, value in params if value is not None]
    for index, media in enumerate(message.media):
        present.append((f"MediaContentType{index}", media.content_type))
        present.append((f"MediaUrl{index}", base_url.rstrip("/") + media.uri))
    if channel_of(from_) == "whatsapp":
        present.append(("ProfileName", spec.profile_name))
        present.append(("WaId", from_.partition(":")[2].lstrip("+")))
    if spec.opt_out_type:
        present.append(("OptOutType", spec.opt_out_type))
    present.extend(spec.extra_params.items())
    return present


def _geo(from_: str, to: str, spec: InboundSpec) -> dict[str, str]:
    geo = {
        f"{side}{field}": ""
        for side in ("From", "To")
        for field in ("City", "State", "Zip", "Country")
    }
    geo["FromCountry"] = country_of(from_)
    geo["ToCountry"] = country_of(to)
    geo.update({k: v for k, v in spec.geo.items() if k in geo})
    return geo
