from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.errors import BridgeError, InvalidInput
from bridge.models import (
    ConfigId,
    Extension,
    InboundRule,
    OutboundRule,
    SmsConfig,
    TrunkId,
    country_of,
    to_e164,
)
from bridge.routing import (
    NO_ALPHANUMERIC_SENDER,
    ConfigView,
    CountryNotAllowed,
    InboundDecision,
    InboundRuleIndex,
    InvalidDestination,
    NoRoute,
    NoSender,
    OutboundPlan,
    RoutingError,
    range_blocks,
    route_inbound,
    route_outbound,
)

DID = "+15551230042"
REMOTE = "+15557770001"


def rule(
    did: str,
    *extensions: str,
    name: str | None = None,
    trunk: str | None = None,
    source: str | None = None,
    enabled: bool = True,
) -> InboundRule:
    return InboundRule(
        name=name or did,
        did=did,
        trunk_id=None if trunk is None else TrunkId(trunk),
        from_=source,
        extensions=list(extensions) or ["100"],
        enabled=enabled,
    )


def decide(
    rules: Sequence[InboundRule],
    did: str = DID,
    *,
    remote: str = REMOTE,
    trunk: str | None = None,
    affinity: str | None = None,
) -> InboundDecision:
    return route_inbound(
        InboundRuleIndex.build(rules),
        did=did,
        remote=remote,
        trunk_id=trunk,
        affinity_extension=affinity,
    )


# --- inbound examples -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "winner", "reason"),
    [
        (0, "exact", "rule"),
        (1, "narrow", "rule"),
        (2, "wide", "rule"),
        (3, "long", "rule"),
        (4, "short", "rule"),
        (5, "any", "fallback"),
    ],
)
def test_the_most_specific_kind_wins_whatever_the_order(
    drop: int, winner: str, reason: str
) -> None:
    by_specificity = [
        rule(DID, name="exact"),
        rule("+15551230000-+15551230099", name="narrow"),
        rule("+15551230000-+15551239999", name="wide"),
        rule("+1555123*", name="long"),
        rule("+1555*", name="short"),
        rule("*", name="any"),
    ]
    rules = list(reversed(by_specificity[drop:]))
    decision = decide(rules)
    assert decision.rule_name == winner
    assert decision.reason == reason
    assert decision.rule_index == [r.name for r in rules].index(winner)


def test_the_narrower_range_wins_even_when_listed_later() -> None:
    rules = [
        rule("+15551230000-+15551230999", "1"),
        rule("+15551230040-+15551230049", "2"),
        rule("+15551230000-+15551230050", "3"),
    ]
    assert decide(rules).extensions == ("2",)
    assert any("width 9" in line for line in decide(rules).explanation)


def test_ranges_of_equal_width_tie_by_list_order() -> None:
    rules = [rule("+15551230040-+15551230049", "1"), rule("+15551230042-+15551230051", "2")]
    assert decide(rules).extensions == ("1",)
    assert decide(rules[::-1]).extensions == ("2",)


@pytest.mark.parametrize(
    ("did", "matches"),
    [
        ("+15551230010", True),
        ("+15551230100", True),
        ("+15551230055", True),
        ("+15551230009", False),
        ("+15551230101", False),
        ("+1555123005", False),
        ("+155512300550", False),
    ],
)
def test_a_range_is_inclusive_and_of_one_length(did: str, matches: bool) -> None:
    decision = decide([rule("+15551230010-+15551230100", "1")], did)
    assert (decision.reason == "rule") is matches


def test_the_longer_prefix_wins_and_equal_prefixes_tie_by_order() -> None:
    rules = [rule("+1*", "1"), rule("+15551*", "2"), rule("+15551*", "3"), rule("+155*", "4")]
    assert decide(rules).extensions == ("2",)


def test_a_prefix_matches_a_number_equal_to_it() -> None:
    assert decide([rule("+15551230042*", "1")]).extensions == ("1",)


def test_exact_duplicates_tie_by_order() -> None:
    assert decide([rule(DID, "1"), rule(DID, "2")]).extensions == ("1",)


def test_disabled_rules_are_ignored() -> None:
    rules = [rule(DID, "1", enabled=False), rule("+1555*", "2"), rule("*", "3", enabled=False)]
    decision = decide(rules)
    assert (decision.extensions, decision.rule_index) == (("2",), 1)
    assert decide([rules[0], rules[2]]).reason == "unroutable"


def test_a_trunk_rule_applies_only_on_its_trunk() -> None:
    rules = [rule(DID, "1", trunk="trk_a"), rule("*", "2")]
    assert decide(rules, trunk="trk_a").extensions == ("1",)
    assert decide(rules, trunk="trk_b").extensions == ("2",)
    assert decide(rules, trunk=None).extensions == ("2",)


def test_trunk_and_shared_rules_of_one_kind_merge_by_list_order() -> None:
    rules = [
        rule("+1555123*", "shared-prefix"),
        rule("+15551230000-+15551230999", "trunk-wide", trunk="t"),
        rule("+15551230000-+15551230099", "shared-narrow"),
        rule("+15551230040-+15551230049", "trunk-narrow", trunk="t"),
    ]
    assert decide(rules, trunk="t").extensions == ("trunk-narrow",)
    assert decide(rules[:3], trunk="t").extensions == ("shared-narrow",)
    assert decide([rule("+1555*", "s"), rule("+1555*", "t", trunk="t")], trunk="t").extensions == (
        "s",
    )
    assert decide([rule("+1555*", "t", trunk="t"), rule("+1555*", "s")], trunk="t").extensions == (
        "t",
    )
    assert decide([rule("+15*", "s"), rule("+1555*", "t", trunk="t")], trunk="t").extensions == (
        "t",
    )


def test_a_from_filter_that_does_not_apply_passes_to_the_next_candidate() -> None:
    rules = [
        rule(DID, "vip", source="+1999*"),
        rule(DID, "same-did"),
        rule("+1555*", "prefix"),
    ]
    decision = decide(rules)
    assert decision.extensions == ("same-did",)
    assert any("skipped" in line and "+1999*" in line for line in decision.explanation)
    assert decide(rules, remote="+19990000001").extensions == ("vip",)
    assert decide([rules[0], rules[2]]).extensions == ("prefix",)


@pytest.mark.parametrize(
    ("source", "remote", "applies"),
    [
        ("+15557770001", "+15557770001", True),
        ("+1555777*", "+15557770001", True),
        ("+15557770000-+15557770009", "+15557770001", True),
        ("+15557770002-+15557770009", "+15557770001", False),
        ("*", "ACME", True),
        ("+1*", "ACME", False),
        ("+1*", "+1ACME", False),
        ("+10-+19", "+1/", False),
    ],
)
def test_from_uses_the_did_pattern_language(source: str, remote: str, applies: bool) -> None:
    decision = decide([rule(DID, "1", source=source)], remote=remote)
    assert (decision.reason == "rule") is applies


def test_a_did_that_is_not_a_number_matches_only_star() -> None:
    rules = [rule("+1*", "prefix"), rule("+10-+19", "range"), rule("*", "any")]
    assert decide(rules, "+1/").extensions == ("any",)
    assert decide(rules, "12345").extensions == ("any",)


def test_a_rule_with_several_extensions_gives_all_of_them() -> None:
    decision = decide([rule(DID, "101", "102", "103")])
    assert decision.extensions == ("101", "102", "103")
    assert decision.explanation[-1] == "delivers to extensions 101, 102, 103"


def test_star_is_the_fallback() -> None:
    decision = decide([rule("+1666*", "1"), rule("*", "2", name="catch-all")])
    assert decision == InboundDecision(
        extensions=("2",),
        rule_index=1,
        rule_name="catch-all",
        reason="fallback",
        explanation=decision.explanation,
    )


def test_nothing_applies_is_unroutable() -> None:
    decision = decide([rule("+1666*", "1")], trunk="trk_a")
    assert decision.extensions == ()
    assert (decision.rule_index, decision.rule_name, decision.reason) == (None, None, "unroutable")
    assert "no enabled inbound rule" in decision.explanation[-1]
    assert decide([]).reason == "unroutable"


def test_conversation_affinity_wins_over_every_rule() -> None:
    decision = decide([rule(DID, "1")], affinity="205")
    assert (decision.extensions, decision.reason, decision.rule_index) == (
        ("205",),
        "affinity",
        None,
    )
    assert "205" in decision.explanation[0]


def test_the_index_counts_enabled_rules() -> None:
    index = InboundRuleIndex.build([rule(DID), rule("*", enabled=False), rule("+1*", trunk="t")])
    assert len(index) == 2


def test_a_large_index_decides_like_a_small_one() -> None:
    rules = [rule(f"+1555{n:07d}", str(n)) for n in range(0, 20_000, 2)]
    rules += [rule(f"+1556{n:03d}0000-+1556{n:03d}9999", f"r{n}") for n in range(500)]
    rules += [rule("+1557*", "p"), rule("*", "any")]
    index = InboundRuleIndex.build(rules)

    def go(did: str) -> tuple[str, ...]:
        return route_inbound(
            index, did=did, remote=REMOTE, trunk_id=None, affinity_extension=None
        ).extensions

    assert go("+15550000010") == ("10",)
    assert go("+15550000011") == ("any",)
    assert go("+15561234567") == ("r123",)
    assert go("+15570000000") == ("p",)


@pytest.mark.parametrize(
    ("low", "high", "blocks"),
    [
        ("1000", "1999", ["1"]),
        ("1000", "1000", ["1000"]),
        ("1200", "1399", ["12", "13"]),
        (
            "1005",
            "1023",
            ["1005", "1006", "1007", "1008", "1009", "101", "1020", "1021", "1022", "1023"],
        ),
        ("0000", "9999", [""]),
        ("1990", "2009", ["199", "200"]),
    ],
)
def test_range_blocks_examples(low: str, high: str, blocks: list[str]) -> None:
    assert range_blocks(low, high) == blocks


@given(st.data(), st.integers(min_value=1, max_value=5))
def test_range_blocks_cover_the_range_exactly_once(data: st.DataObject, size: int) -> None:
    top = 10**size - 1
    low = data.draw(st.integers(0, top))
    high = data.draw(st.integers(low, top))
    blocks = range_blocks(f"{low:0{size}d}", f"{high:0{size}d}")
    assert len(blocks) <= 18 * size
    for value in {0, top, low, high, max(low - 1, 0), min(high + 1, top), (low + high) // 2}:
        text = f"{value:0{size}d}"
        hits = sum(text.startswith(block) for block in blocks)
        assert hits == (1 if low <= value <= high else 0)


# --- inbound: the index against a literal reading of design §6 ----------------------------------


def _is_number(value: str) -> bool:
    return re.fullmatch(r"\+[0-9]+", value) is not None


def ref_specificity(pattern: str, value: str) -> tuple[int, int] | None:
    """(kind rank, rank within the kind) if ``pattern`` matches ``value``, else None."""
    if pattern == "*":
        return (3, 0)
    if pattern.endswith("*"):
        if _is_number(value) and value.startswith(pattern[:-1]):
            return (2, -len(pattern))
        return None
    if "-" in pattern:
        low, high = pattern.split("-")
        if _is_number(value) and len(value) == len(low) and int(low) <= int(value) <= int(high):
            return (1, int(high) - int(low))
        return None
    return (0, 0) if value == pattern else None


def reference(rules: Sequence[InboundRule], did: str, remote: str, trunk: str | None) -> int | None:
    best: tuple[tuple[int, int], int] | None = None
    for position, candidate in enumerate(rules):
        if not candidate.enabled:
            continue
        if candidate.trunk_id is not None and candidate.trunk_id != trunk:
            continue
        if candidate.from_ is not None and ref_specificity(candidate.from_, remote) is None:
            continue
        key = ref_specificity(candidate.did, did)
        if key is not None and (best is None or (key, position) < (best[0], best[1])):
            best = (key, position)
    return None if best is None else best[1]


digits = st.text("0123456789", min_size=1, max_size=4)
numbers = st.builds(lambda first, rest: f"+{first}{rest}", st.sampled_from("12"), digits)


@st.composite
def patterns(draw: st.DrawFn, near: Sequence[str] = ()) -> str:
    """Any pattern, usually built around one of ``near`` so that rules overlap."""
    nearby = bool(near) and draw(st.integers(0, 3)) > 0
    base = draw(st.sampled_from(list(near))) if nearby else draw(numbers)
    kind = draw(st.sampled_from(["exact", "exact", "prefix", "prefix", "range", "range", "any"]))
    if kind == "exact":
        return base
    if kind == "prefix":
        return base[: draw(st.integers(2, len(base)))] + "*"
    if kind == "range":
        size = len(base) - 1
        value = int(base[1:])
        span = 10 ** draw(st.integers(0, size))
        low = draw(st.integers(max(10 ** (size - 1), value - span), value))
        high = draw(st.integers(value, min(10**size - 1, value + span)))
        return f"+{low}-+{high}"
    return "*"


TRUNKS = st.sampled_from([None, None, None, TrunkId("t1"), TrunkId("t2")])
MOSTLY_ENABLED = st.sampled_from([True, True, True, False])


@st.composite
def rule_lists(draw: st.DrawFn, near: Sequence[str]) -> list[InboundRule]:
    count = draw(st.integers(0, 12))
    return [
        InboundRule(
            name=f"r{i}",
            did=draw(patterns(near)),
            trunk_id=draw(TRUNKS),
            from_=draw(st.none() | patterns(near)),
            extensions=[f"x{i}"],
            enabled=draw(MOSTLY_ENABLED),
        )
        for i in range(count)
    ]


@st.composite
def scenarios(
    draw: st.DrawFn, routable: bool = False
) -> tuple[list[InboundRule], str, str, str | None]:
    anchors = draw(st.lists(numbers, min_size=1, max_size=3))
    rules = draw(rule_lists(anchors))
    values = st.sampled_from(["ACME", "new", *anchors, *anchors, *anchors])

    def pick() -> str:
        value = draw(values)
        return draw(numbers) if value == "new" else value

    did, remote = pick(), pick()
    trunk = draw(st.sampled_from([None, "t1", "t2", "t3"]))
    if routable and reference(rules, did, remote, trunk) is None:
        # Guarantee a winner without fixing where it sits or how specific it is.
        did_pattern = draw(patterns([did])) if _is_number(did) else "*"
        assume(ref_specificity(did_pattern, did) is not None)
        at = draw(st.integers(0, len(rules)))
        rules.insert(at, rule(did_pattern, "sure", name="sure"))
    return rules, did, remote, trunk


@settings(max_examples=300)
@given(scenarios())
def test_the_index_agrees_with_the_reference(
    scenario: tuple[list[InboundRule], str, str, str | None],
) -> None:
    rules, did, remote, trunk = scenario
    decision = decide(rules, did, remote=remote, trunk=trunk)
    expected = reference(rules, did, remote, trunk)
    assert decision.rule_index == expected
    if expected is None:
        assert (decision.reason, decision.extensions) == ("unroutable", ())
    else:
        assert decision.extensions == tuple(rules[expected].extensions)
        assert decision.reason == ("fallback" if rules[expected].did == "*" else "rule")


@given(scenarios(routable=True), st.data())
def test_a_less_specific_rule_never_changes_the_decision(
    scenario: tuple[list[InboundRule], str, str, str | None], data: st.DataObject
) -> None:
    rules, did, remote, trunk = scenario
    before = decide(rules, did, remote=remote, trunk=trunk)
    assert before.rule_index is not None
    winner = ref_specificity(rules[before.rule_index].did, did)
    extra = data.draw(patterns([did] if _is_number(did) else []))
    extra_key = ref_specificity(extra, did)
    assume(winner is not None and (extra_key is None or extra_key > winner))
    at = data.draw(st.integers(0, len(rules)))
    added = rule(extra, "new", name="new", trunk=data.draw(TRUNKS))
    after = decide([*rules[:at], added, *rules[at:]], did, remote=remote, trunk=trunk)
    assert after.rule_name == before.rule_name
    assert after.extensions == before.extensions


@given(scenarios(routable=True), st.booleans())
def test_ties_go_to_the_earlier_rule(
    scenario: tuple[list[InboundRule], str, str, str | None], before_it: bool
) -> None:
    rules, did, remote, trunk = scenario
    decision = decide(rules, did, remote=remote, trunk=trunk)
    assert decision.rule_index is not None
    position = decision.rule_index
    twin = rules[position].model_copy(update={"name": "twin", "extensions": ["twin"]})
    at = position if before_it else position + 1
    after = decide([*rules[:at], twin, *rules[at:]], did, remote=remote, trunk=trunk)
    assert after.rule_name == ("twin" if before_it else decision.rule_name)


# --- outbound -----------------------------------------------------------------------------------

CONFIG = ConfigView(
    id=ConfigId("cfg_1"),
    enabled=True,
    sender_id=None,
    messaging_service_sid=None,
    numbers=frozenset({"+15551230001", "+15551230002", "+15551230003"}),
    allowed_countries=frozenset({"US", "CA", "GB"}),
)
SERVICE = "MG" + "0" * 32


def out_rule(**over: object) -> OutboundRule:
    body: dict[str, object] = {"name": "r", "trunks": ["trk_1"]}
    body.update(over)
    return OutboundRule.model_validate(body)


def ext(dids: Sequence[str] = ("+15551230001",), default: str | None = None) -> Extension:
    return Extension(extension="101", dids=list(dids), default_did=default)


def send(
    rules: Sequence[OutboundRule],
    dialled: str = "5559870001",
    *,
    extension: Extension | None = None,
    from_extension: str = "101",
    from_did: str | None = None,
    configs: dict[TrunkId, ConfigView] | None = None,
    country: str = "US",
) -> OutboundPlan:
    return route_outbound(
        rules,
        from_extension=from_extension,
        dialled=dialled,
        default_country=country,
        extension=ext() if extension is None else extension,
        from_did=from_did,
        configs={TrunkId("trk_1"): CONFIG} if configs is None else configs,
    )


def test_a_plain_send_uses_the_extensions_did() -> None:
    plan = send([out_rule(name="all")])
    assert plan == OutboundPlan(
        rule_index=0,
        rule_name="all",
        destination="+15559870001",
        destination_country="US",
        trunk_id=TrunkId("trk_1"),
        config_id=ConfigId("cfg_1"),
        sender_kind="number",
        sender="+15551230001",
        explanation=plan.explanation,
    )
    assert any("trunk trk_1 carries it" in line for line in plan.explanation)


def test_the_first_matching_enabled_rule_wins() -> None:
    rules = [
        out_rule(name="off", enabled=False),
        out_rule(name="sales", from_extensions=["2*"]),
        out_rule(name="intl", prefix="011"),
        out_rule(name="short", max_length=5),
        out_rule(name="long", min_length=11),
        out_rule(name="local"),
        out_rule(name="later"),
    ]
    plan = send(rules)
    assert (plan.rule_index, plan.rule_name) == (5, "local")
    skipped = [line for line in plan.explanation if "skipped" in line]
    assert len(skipped) == 5


@pytest.mark.parametrize(
    ("patterns", "extension", "matches"),
    [
        ([], "101", True),
        (["*"], "101", True),
        (["101"], "101", True),
        (["10"], "101", False),
        (["1*"], "101", True),
        (["10*"], "1", False),
        (["200", "1*"], "101", True),
        (["200", "2*"], "101", False),
    ],
)
def test_from_extensions(patterns: list[str], extension: str, matches: bool) -> None:
    rules = [out_rule(name="r", from_extensions=patterns), out_rule(name="other")]
    assert (send(rules, from_extension=extension).rule_name == "r") is matches


def test_lengths_apply_to_the_dialled_string_before_strip_and_prepend() -> None:
    rule = out_rule(min_length=13, max_length=13, strip=3, prepend="+44")
    plan = send([rule], "0112079460000", configs={TrunkId("trk_1"): CONFIG})
    assert (plan.destination, plan.destination_country) == ("+442079460000", "GB")
    with pytest.raises(NoRoute):
        send([rule], "2079460000")


def test_the_default_country_normalises_national_numbers() -> None:
    assert send([out_rule()], "02079460000", country="GB").destination == "+442079460000"
    assert send([out_rule()], "+15559870001", country="GB").destination == "+15559870001"


def test_a_dialled_string_that_is_not_a_number_is_invalid_destination() -> None:
    with pytest.raises(InvalidDestination) as caught:
        send([out_rule()], "12")
    assert caught.value.code == "invalid_destination"
    with pytest.raises(InvalidDestination):
        send([out_rule(strip=10)], "5559870001")
    with pytest.raises(InvalidDestination):
        send([out_rule()], "5559870001**")
    with pytest.raises(InvalidDestination):
        send([out_rule(prepend="+1")], "+5559870001")


def test_no_matching_rule_is_no_route() -> None:
    with pytest.raises(NoRoute) as caught:
        send([out_rule(prefix="9")])
    error = caught.value
    assert error.code == "no_route"
    assert isinstance(error, RoutingError)
    assert isinstance(error, InvalidInput)
    assert isinstance(error, BridgeError)
    assert error.explanation and "skipped" in error.explanation[0]
    with pytest.raises(NoRoute):
        send([])


def test_the_first_trunk_with_an_enabled_configuration_carries_it() -> None:
    off = ConfigView(
        id=ConfigId("cfg_off"),
        enabled=False,
        sender_id=None,
        messaging_service_sid=SERVICE,
        numbers=frozenset(),
        allowed_countries=frozenset({"US"}),
    )
    configs = {TrunkId("trk_off"): off, TrunkId("trk_1"): CONFIG, TrunkId("trk_2"): off}
    rule = out_rule(trunks=["trk_none", "trk_off", "trk_1", "trk_2"])
    plan = send([rule], configs=configs)
    assert (plan.trunk_id, plan.config_id) == ("trk_1", "cfg_1")
    with pytest.raises(NoRoute) as caught:
        send([out_rule(trunks=["trk_none", "trk_off"])], configs=configs)
    assert caught.value.code == "no_route"


def test_a_country_the_configuration_does_not_allow_is_refused() -> None:
    with pytest.raises(CountryNotAllowed) as caught:
        send([out_rule()], "+33612345678")
    assert caught.value.code == "country_not_allowed"


def test_the_rules_number_sender_must_belong_to_the_configuration() -> None:
    assert send([out_rule(sender="+15551230003")]).sender == "+15551230003"
    with pytest.raises(NoSender) as caught:
        send([out_rule(sender="+15550000000")])
    assert caught.value.code == "no_sender"


def test_the_rules_alphanumeric_sender_only_where_accepted() -> None:
    plan = send([out_rule(sender="ACME")], "+442079460000")
    assert (plan.sender_kind, plan.sender) == ("alphanumeric", "ACME")
    with pytest.raises(NoSender):
        send([out_rule(sender="ACME")])


def test_the_configurations_sender_id_is_never_used_for_us_or_ca() -> None:
    config = replace(CONFIG, sender_id="ACME Corp")
    configs = {TrunkId("trk_1"): config}
    plan = send([out_rule()], "+442079460000", configs=configs)
    assert (plan.sender_kind, plan.sender) == ("alphanumeric", "ACME Corp")
    for dialled in ("5559870001", "+16135550123"):
        plan = send([out_rule()], dialled, configs=configs)
        assert (plan.sender_kind, plan.sender) == ("number", "+15551230001")
    assert {"US", "CA"} <= NO_ALPHANUMERIC_SENDER


@pytest.mark.parametrize(
    ("dids", "default", "from_did", "sender"),
    [
        (["+15551230001", "+15551230002"], "+15551230002", "+15551230001", "+15551230001"),
        (["+15551230001", "+15551230002"], "+15551230002", "+15551230003", "+15551230002"),
        (["+15551230001", "+15551230002"], "+15551230002", None, "+15551230002"),
        (["+15559990000", "+15551230002"], "+15559990000", None, "+15551230002"),
        (["+15559990000", "+15551230002"], None, "+15559990000", "+15551230002"),
        (["+15551230001", "+15551230002"], None, None, SERVICE),
        ([], None, None, SERVICE),
    ],
)
def test_the_extensions_did_on_the_configuration(
    dids: list[str], default: str | None, from_did: str | None, sender: str
) -> None:
    config = replace(CONFIG, messaging_service_sid=SERVICE)
    plan = send(
        [out_rule()],
        extension=ext(dids, default),
        from_did=from_did,
        configs={TrunkId("trk_1"): config},
    )
    assert plan.sender == sender
    assert plan.sender_kind == ("messaging_service" if sender == SERVICE else "number")


def test_no_sender_at_all_is_a_clear_error() -> None:
    with pytest.raises(NoSender) as caught:
        send([out_rule()], extension=ext([]))
    assert caught.value.code == "no_sender"
    assert "messaging_service_sid" in caught.value.message


def test_an_unknown_extension_falls_back_to_the_messaging_service() -> None:
    config = replace(CONFIG, messaging_service_sid=SERVICE)
    plan = route_outbound(
        [out_rule()],
        from_extension="999",
        dialled="5559870001",
        default_country="US",
        extension=None,
        configs={TrunkId("trk_1"): config},
    )
    assert plan.sender_kind == "messaging_service"


def test_config_view_of_a_stored_configuration() -> None:
    now = datetime.now(UTC)
    config = SmsConfig.model_validate(
        {
            "id": "cfg_9",
            "tenant_id": "ten_1",
            "trunk_id": "trk_1",
            "name": "Main",
            "account_sid": "AC" + "0" * 32,
            "credential": {"type": "auth_token", "auth_token_last4": "0000"},
            "sender_id": "ACME",
            "messaging_service_sid": None,
            "numbers": [{"number": "+15551230001"}, {"number": "12345", "type": "short_code"}],
            "allowed_countries": ["US", "CA"],
            "enabled": True,
            "webhook_url": "https://example.test/w",
            "status_callback_url": "https://example.test/s",
            "created_at": now,
            "updated_at": now,
        }
    )
    assert ConfigView.of(config) == ConfigView(
        id=ConfigId("cfg_9"),
        enabled=True,
        sender_id="ACME",
        messaging_service_sid=None,
        numbers=frozenset({"+15551230001", "12345"}),
        allowed_countries=frozenset({"US", "CA"}),
    )


# --- outbound properties ------------------------------------------------------------------------

EXTENSIONS = ["100", "101", "20", "2001"]
EXTENSION_PATTERNS = ["100", "101", "1*", "2*", "*"]
EVERYWHERE = ConfigView(
    id=ConfigId("cfg_all"),
    enabled=True,
    sender_id=None,
    messaging_service_sid=SERVICE,
    numbers=frozenset(),
    allowed_countries=frozenset(phonenumbers.SUPPORTED_REGIONS),
)


def ref_outbound(rules: Sequence[OutboundRule], extension: str, dialled: str) -> int | None:
    for position, candidate in enumerate(rules):
        patterns = candidate.from_extensions
        by_extension = not patterns or any(
            extension.startswith(p[:-1]) if p.endswith("*") else extension == p for p in patterns
        )
        if (
            candidate.enabled
            and by_extension
            and dialled[: len(candidate.prefix)] == candidate.prefix
            and (candidate.min_length or 0) <= len(dialled) <= (candidate.max_length or 99)
        ):
            return position
    return None


@st.composite
def outbound_rules(draw: st.DrawFn) -> OutboundRule:
    low = draw(st.sampled_from([None, None, 4, 10, 11, 12]))
    high = draw(
        st.sampled_from([None, None, 10, 11, 13, 15]).filter(lambda n: (n or 99) >= (low or 0))
    )
    return OutboundRule(
        name=f"o{draw(st.integers(0, 999))}",
        from_extensions=draw(st.lists(st.sampled_from(EXTENSION_PATTERNS), max_size=2)),
        prefix=draw(st.sampled_from(["", "", "", "0", "1", "011", "+"])),
        min_length=low,
        max_length=high,
        strip=draw(st.sampled_from([0, 0, 0, 1, 3])),
        prepend=draw(st.sampled_from(["", "", "1", "+1", "+44", "44"])),
        trunks=[TrunkId("trk_1")],
        enabled=draw(MOSTLY_ENABLED),
    )


dialled_strings = st.builds(
    lambda lead, body: lead + body,
    st.sampled_from(["", "", "+", "+1", "1", "0", "011", "01144", "+44"]),
    st.sampled_from(["5559870001", "2079460000", "7700900123", "6135550123"])
    | st.text("0123456789", max_size=13),
)


@settings(max_examples=200)
@given(st.lists(outbound_rules(), max_size=6), st.sampled_from(EXTENSIONS), dialled_strings)
def test_outbound_follows_the_first_matching_rule(
    rules: list[OutboundRule], extension: str, dialled: str
) -> None:
    expected = ref_outbound(rules, extension, dialled)

    def go() -> OutboundPlan:
        return route_outbound(
            rules,
            from_extension=extension,
            dialled=dialled,
            default_country="US",
            extension=None,
            configs={TrunkId("trk_1"): EVERYWHERE},
        )

    if expected is None:
        with pytest.raises(NoRoute):
            go()
        return
    chosen = rules[expected]
    rewritten = chosen.prepend + dialled[chosen.strip :]
    try:
        if not re.fullmatch(r"\+?[0-9]+", rewritten):
            raise ValueError(rewritten)
        destination = to_e164(rewritten, "US")
    except ValueError:
        with pytest.raises(InvalidDestination):
            go()
        return
    if country_of(destination) not in EVERYWHERE.allowed_countries:
        with pytest.raises(CountryNotAllowed):
            go()
        return
    plan = go()
    assert plan.rule_index == expected
    assert plan.destination == destination
    assert plan.destination_country == country_of(destination)
    assert plan.sender_kind == "messaging_service"
