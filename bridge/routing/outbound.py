"""Outbound routing (design §6): the first matching rule, the destination, trunk and sender."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, assert_never

from bridge.errors import FieldProblem, InvalidInput
from bridge.models import (
    ConfigId,
    Extension,
    OutboundRule,
    SendChannel,
    SmsConfig,
    TrunkId,
    country_of,
    to_e164,
)
from bridge.routing.inbound import rule_label

SenderKind = Literal["alphanumeric", "number", "messaging_service"]

# Destinations whose carriers refuse alphanumeric sender IDs: the US and Canada (design §6) and
# the US territories, whose traffic runs over US carriers. Add a country here when Twilio
# documents that it rejects them (error 21612) rather than quietly replacing the sender.
NO_ALPHANUMERIC_SENDER: frozenset[str] = frozenset({"US", "CA", "PR", "VI", "GU", "AS", "MP"})

_E164_SHAPE = re.compile(r"\+[1-9][0-9]{1,14}")
_DIGITS = re.compile(r"\+?[0-9]+")


# --- outbound -----------------------------------------------------------------------------------


class RoutingError(InvalidInput):
    """The message cannot be routed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        details: tuple[FieldProblem, ...] = (),
        explanation: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, details=details)
        self.explanation = explanation


class NoRoute(RoutingError):
    """No enabled outbound rule with a usable trunk matches this extension and number."""

    code = "no_route"


class NoSender(RoutingError):
    """No sender is available for this message."""

    code = "no_sender"


class CountryNotAllowed(RoutingError):
    """The destination country is not allowed by the SMS configuration."""

    code = "country_not_allowed"


class InvalidDestination(RoutingError):
    """The dialled number cannot be made into an E.164 number."""

    code = "invalid_destination"


@dataclass(frozen=True)
class ConfigView:
    """The parts of a trunk's SMS configuration that outbound routing reads: ``numbers`` send
    SMS, ``whatsapp_numbers`` are the account's WhatsApp senders (design §12)."""

    id: ConfigId
    enabled: bool
    sender_id: str | None
    messaging_service_sid: str | None
    numbers: frozenset[str]
    allowed_countries: frozenset[str]
    whatsapp_numbers: frozenset[str] = frozenset()

    @classmethod
    def of(cls, config: SmsConfig) -> ConfigView:
        """The routing view of a stored configuration."""
        return cls(
            id=config.id,
            enabled=config.enabled,
            sender_id=config.sender_id,
            messaging_service_sid=config.messaging_service_sid,
            numbers=frozenset(n.number for n in config.numbers if "sms" in n.channels),
            allowed_countries=frozenset(config.allowed_countries),
            whatsapp_numbers=frozenset(
                n.number for n in config.numbers if "whatsapp" in n.channels
            ),
        )

    def senders(self, channel: SendChannel) -> frozenset[str]:
        """The numbers that may send on ``channel``."""
        return self.whatsapp_numbers if channel == "whatsapp" else self.numbers


@dataclass(frozen=True)
class OutboundPlan:
    """How an outbound text leaves: rule, destination, trunk, configuration and sender."""

    rule_index: int
    rule_name: str
    destination: str
    destination_country: str
    trunk_id: TrunkId
    config_id: ConfigId
    sender_kind: SenderKind
    sender: str
    explanation: tuple[str, ...]
    channel: SendChannel = "sms"


def extension_matches(patterns: Sequence[str], extension: str) -> bool:
    """``[]`` or ``*`` is every extension, ``1*`` a prefix, anything else one extension."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern.endswith("*"):
            if extension.startswith(pattern[:-1]):
                return True
        elif extension == pattern:
            return True
    return False


def _mismatch(rule: OutboundRule, from_extension: str, dialled: str) -> str | None:
    if not rule.enabled:
        return "is disabled"
    if not extension_matches(rule.from_extensions, from_extension):
        return f"extension {from_extension} is not one of {', '.join(rule.from_extensions)}"
    if not dialled.startswith(rule.prefix):
        return f"{dialled!r} does not start with {rule.prefix!r}"
    if rule.min_length is not None and len(dialled) < rule.min_length:
        return f"{dialled!r} is shorter than {rule.min_length}"
    if rule.max_length is not None and len(dialled) > rule.max_length:
        return f"{dialled!r} is longer than {rule.max_length}"
    return None


def matching_rule(
    rules: Sequence[OutboundRule], from_extension: str, dialled: str
) -> OutboundRule | None:
    """The rule `route_outbound` would take: whose trunks' configurations it will read."""
    return next((r for r in rules if _mismatch(r, from_extension, dialled) is None), None)


def _extension_did(
    extension: Extension | None,
    from_did: str | None,
    config: ConfigView,
    notes: list[str],
    channel: SendChannel = "sms",
) -> str | None:
    numbers = config.senders(channel)
    if extension is None:
        notes.append("the sending extension is not configured, so it has no DID")
        return None
    on = " for WhatsApp" if channel == "whatsapp" else ""
    if from_did is not None:
        if from_did in extension.dids and from_did in numbers:
            notes.append(f"sender: the requested from_did {from_did}")
            return from_did
        notes.append(
            f"from_did {from_did} ignored: not a DID of extension {extension.extension} "
            f"on configuration {config.id}{on}"
        )
    if extension.default_did is not None and extension.default_did in numbers:
        notes.append(f"sender: extension {extension.extension}'s default_did")
        return extension.default_did
    here = [did for did in extension.dids if did in numbers]
    if len(here) == 1:
        notes.append(
            f"sender: extension {extension.extension}'s only DID on this configuration{on}"
        )
        return here[0]
    notes.append(
        f"extension {extension.extension} has no DID on configuration {config.id}{on}"
        if not here
        else f"extension {extension.extension} has {len(here)} DIDs on configuration "
        f"{config.id}{on} and none is its default_did"
    )
    return None


def _whatsapp_sender(
    rule: OutboundRule,
    config: ConfigView,
    extension: Extension | None,
    from_did: str | None,
    notes: list[str],
) -> tuple[SenderKind, str]:
    """Design §12: only a WhatsApp number of the configuration sends by WhatsApp (never an
    alphanumeric sender or a messaging service)."""
    if rule.sender is not None:
        if rule.sender in config.whatsapp_numbers:
            notes.append("sender: the rule's sender, a WhatsApp number of the configuration")
            return "number", rule.sender
        notes.append(f"the rule's sender {rule.sender} is not a WhatsApp number: not used")
    did = _extension_did(extension, from_did, config, notes, "whatsapp")
    if did is not None:
        return "number", did
    if len(config.whatsapp_numbers) == 1:
        (only,) = config.whatsapp_numbers
        notes.append("sender: the configuration's only WhatsApp number")
        return "number", only
    raise NoSender(
        f"no WhatsApp sender: configuration {config.id} has "
        + (
            "no number with the whatsapp channel"
            if not config.whatsapp_numbers
            else "several WhatsApp numbers and the extension has none of them"
        ),
        explanation=tuple(notes),
    )


def _sender(
    rule: OutboundRule,
    config: ConfigView,
    country: str,
    extension: Extension | None,
    from_did: str | None,
    notes: list[str],
) -> tuple[SenderKind, str]:
    alphanumeric_ok = country not in NO_ALPHANUMERIC_SENDER
    if rule.sender is not None:
        if rule.sender in config.numbers:
            notes.append("sender: the rule's sender, a number of the configuration")
            return "number", rule.sender
        if _E164_SHAPE.fullmatch(rule.sender):
            raise NoSender(
                f"the rule's sender {rule.sender} is not a number of configuration {config.id}",
                explanation=tuple(notes),
            )
        if not alphanumeric_ok:
            raise NoSender(
                f"the rule's sender {rule.sender!r} is alphanumeric and {country} does not "
                "accept alphanumeric senders",
                explanation=tuple(notes),
            )
        notes.append("sender: the rule's alphanumeric sender")
        return "alphanumeric", rule.sender
    if config.sender_id is not None:
        if alphanumeric_ok:
            notes.append("sender: the configuration's alphanumeric sender_id")
            return "alphanumeric", config.sender_id
        notes.append(f"sender_id not used: {country} does not accept alphanumeric senders")
    did = _extension_did(extension, from_did, config, notes)
    if did is not None:
        return "number", did
    if config.messaging_service_sid is not None:
        notes.append("sender: the configuration's messaging service picks a number")
        return "messaging_service", config.messaging_service_sid
    raise NoSender(
        "no sender: the rule has none, the extension has no usable DID on configuration "
        f"{config.id}, and it has no messaging_service_sid",
        explanation=tuple(notes),
    )


def route_outbound(
    rules: Sequence[OutboundRule],
    *,
    from_extension: str,
    dialled: str,
    default_country: str,
    extension: Extension | None,
    from_did: str | None = None,
    configs: Mapping[TrunkId, ConfigView],
    channel: SendChannel = "sms",
) -> OutboundPlan:
    """Design §6 outbound steps 1-4: rule, E.164 destination, trunk and sender (§12: on
    WhatsApp, a WhatsApp number of the configuration)."""
    notes: list[str] = []
    for position, candidate in enumerate(rules):
        mismatch = _mismatch(candidate, from_extension, dialled)
        if mismatch is None:
            rule = candidate
            break
        notes.append(f"{rule_label(position, candidate.name)} skipped: {mismatch}")
    else:
        raise NoRoute(
            f"no enabled outbound rule matches extension {from_extension} dialling {dialled!r}",
            details=(FieldProblem("to", "no outbound rule matches"),),
            explanation=tuple(notes),
        )

    rewritten = rule.prepend + dialled[rule.strip :]
    try:
        # phonenumbers drops trailing junk such as ``**``, which would send to a number the
        # caller never dialled; a dial string is digits only.
        if not _DIGITS.fullmatch(rewritten):
            raise ValueError("must be digits, optionally after one leading +")
        destination = to_e164(rewritten, default_country)
    except ValueError as exc:
        notes.append(
            f"{rule_label(position, rule.name)} matches; {dialled!r} becomes {rewritten!r}"
        )
        raise InvalidDestination(
            f"{rewritten!r} (from {dialled!r}) {exc}",
            details=(FieldProblem("to", str(exc)),),
            explanation=tuple(notes),
        ) from exc
    notes.append(
        f"{rule_label(position, rule.name)} matches; {dialled!r} becomes {destination} "
        f"(strip {rule.strip}, prepend {rule.prepend!r}, default country {default_country})"
    )

    for trunk_id in rule.trunks:
        config = configs.get(trunk_id)
        if config is not None and config.enabled:
            notes.append(f"trunk {trunk_id} carries it on configuration {config.id}")
            break
        notes.append(
            f"trunk {trunk_id} skipped: "
            + ("no SMS configuration" if config is None else "its SMS configuration is disabled")
        )
    else:
        raise NoRoute(
            f"none of the trunks of {rule_label(position, rule.name)} has an enabled "
            "SMS configuration",
            explanation=tuple(notes),
        )

    country = country_of(destination)
    if country is None or country not in config.allowed_countries:
        raise CountryNotAllowed(
            f"configuration {config.id} does not allow sending to {country or 'unknown country'}"
            f" ({destination})",
            details=(FieldProblem("to", "destination country not allowed"),),
            explanation=tuple(notes),
        )
    notes.append(f"destination country {country} is allowed")

    if channel == "whatsapp":
        kind, sender = _whatsapp_sender(rule, config, extension, from_did, notes)
    elif channel == "sms":
        kind, sender = _sender(rule, config, country, extension, from_did, notes)
    else:
        assert_never(channel)
    return OutboundPlan(
        rule_index=position,
        rule_name=rule.name,
        destination=destination,
        destination_country=country,
        trunk_id=trunk_id,
        config_id=config.id,
        sender_kind=kind,
        sender=sender,
        explanation=tuple(notes),
        channel=channel,
    )
