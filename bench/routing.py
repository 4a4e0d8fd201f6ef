"""Inbound routing cost by rule count: ``python -m bench.routing`` (also part of ``make bench``)."""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from collections.abc import Callable

from bridge.models import InboundRule, TrunkId
from bridge.routing import InboundRuleIndex, route_inbound

SIZES = (10, 1_000, 100_000)
QUERIES = 20_000
REPEATS = 7
TRUNKS = [TrunkId(f"trk_{i}") for i in range(4)]


def _number(rng: random.Random) -> str:
    return f"+1{rng.randrange(200, 999)}{rng.randrange(10**7):07d}"


def _range(rng: random.Random) -> str:
    # Mostly aligned DID blocks as carriers hand them out, some arbitrary spans.
    if rng.random() < 0.7:
        block = 10 ** rng.randrange(1, 5)
        low = int(_number(rng)[1:]) // block * block
        high = low + block - 1
    else:
        low = int(_number(rng)[1:])
        high = min(low + rng.randrange(1, 5000), 19999999999)
    return f"+{low}-+{high}"


def make_rules(count: int, rng: random.Random) -> list[InboundRule]:
    """Mostly exact DIDs, some prefixes and ranges, a few trunk and from filters, a final *."""
    rules: list[InboundRule] = []
    for i in range(count - 1):
        roll = rng.random()
        if roll < 0.85:
            did = _number(rng)
        elif roll < 0.93:
            did = _range(rng)
        else:
            did = _number(rng)[: rng.randrange(4, 10)] + "*"
        rules.append(
            InboundRule(
                name=f"r{i}",
                did=did,
                trunk_id=rng.choice(TRUNKS) if rng.random() < 0.1 else None,
                from_="+1800*" if rng.random() < 0.02 else None,
                extensions=[str(100 + i % 900)],
            )
        )
    rules.append(InboundRule(name="fallback", did="*", extensions=["100"]))
    return rules


def make_queries(rules: list[InboundRule], rng: random.Random) -> list[str]:
    """DIDs that hit each kind of rule in the same proportions whatever the rule count."""
    exact = [r.did for r in rules if r.did[-1].isdigit() and "-" not in r.did]
    ranged = [r.did.partition("-")[0] for r in rules if "-" in r.did]
    prefixed = [r.did[:-1].ljust(12, "0") for r in rules if r.did.endswith("*")]
    dids: list[str] = []
    for _ in range(QUERIES):
        roll = rng.random()
        pool = exact if roll < 0.7 else ranged if roll < 0.8 else prefixed if roll < 0.9 else []
        dids.append(rng.choice(pool) if pool else _number(rng))
    return dids


def _time(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(count: int) -> tuple[float, float, float, float]:
    """(µs per decision over every DID, over a few hot DIDs, build seconds, index MiB)."""
    rng = random.Random(count)
    rules = make_rules(count, rng)
    dids = make_queries(rules, rng)
    # The same mix over 200 DIDs: the lookups do the same work, but their memory stays in
    # cache, which separates the cost of the algorithm from the cost of cache misses.
    hot = dids[:200] * (len(dids) // 200)
    remotes = [_number(rng) for _ in range(64)]
    trunks = [*TRUNKS, None]

    gc.collect()
    build = min(_time(lambda: InboundRuleIndex.build(rules)) for _ in range(3))
    tracemalloc.start()
    index = InboundRuleIndex.build(rules)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    def decide_all(queries: list[str]) -> None:
        for i, did in enumerate(queries):
            # A new string per decision, as a parsed webhook's To is: reusing the query list's
            # strings would measure whether *they* are in cache (with 10 rules most queries
            # repeat a handful of DIDs, with 100,000 they do not), not the index.
            route_inbound(
                index,
                did=did[:1] + did[1:],
                remote=remotes[i & 63],
                trunk_id=trunks[i % 5],
                affinity_extension=None,
            )

    cold = min(_time(lambda: decide_all(dids)) for _ in range(REPEATS)) / len(dids)
    warm = min(_time(lambda: decide_all(hot)) for _ in range(REPEATS)) / len(hot)
    return cold * 1e6, warm * 1e6, build, size / 2**20


def measure_all() -> dict[int, tuple[float, float, float, float]]:
    return {count: measure(count) for count in SIZES}


def main() -> None:
    print(
        f"{'rules':>8} {'µs/decision':>12} {'vs 10':>6} {'µs hot':>7} {'vs 10':>6}"
        f" {'build ms':>9} {'index MiB':>10}"
    )
    base_cold = base_hot = 0.0
    for count, (cold, hot, build, mib) in measure_all().items():
        base_cold, base_hot = base_cold or cold, base_hot or hot
        print(
            f"{count:>8} {cold:>12.2f} {cold / base_cold:>5.2f}x"
            f" {hot:>7.2f} {hot / base_hot:>5.2f}x {build * 1e3:>9.1f} {mib:>10.1f}"
        )


if __name__ == "__main__":
    main()
