"""Pure routing (design §6): inbound rule matching, outbound rule matching and sender choice.

Imports nothing but models and errors: no I/O, so every decision is a function of its inputs.
"""

from __future__ import annotations

from bridge.routing.inbound import (
    InboundDecision,
    InboundReason,
    InboundRuleIndex,
    PatternKind,
    is_number,
    pattern_matches,
    range_blocks,
    route_inbound,
    rule_label,
)
from bridge.routing.outbound import (
    NO_ALPHANUMERIC_SENDER,
    ConfigView,
    CountryNotAllowed,
    InvalidDestination,
    NoRoute,
    NoSender,
    OutboundPlan,
    RoutingError,
    SenderKind,
    extension_matches,
    matching_rule,
    route_outbound,
)

__all__ = [
    "NO_ALPHANUMERIC_SENDER",
    "ConfigView",
    "CountryNotAllowed",
    "InboundDecision",
    "InboundReason",
    "InboundRuleIndex",
    "InvalidDestination",
    "NoRoute",
    "NoSender",
    "OutboundPlan",
    "PatternKind",
    "RoutingError",
    "SenderKind",
    "extension_matches",
    "is_number",
    "matching_rule",
    "pattern_matches",
    "range_blocks",
    "route_inbound",
    "route_outbound",
    "rule_label",
]
