"""A first measure of inbound throughput: pre-signed webhooks, acknowledged per second.

    python -m bench.inbound_rate --url WEBHOOK_URL --auth-token TOKEN --to DID [--count N]

The load runs in this process, so it is a floor for the daemon's rate, not its ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from urllib.parse import urlencode

import aiohttp

from bridge.twilio.signature import compute_signature


def signed_bodies(url: str, token: str, to: str, count: int) -> list[tuple[bytes, str]]:
    bodies = []
    for i in range(count):
        params = [
            ("MessageSid", "SM" + secrets.token_hex(16)),
            ("AccountSid", "AC" + "0" * 32),
            ("From", f"+1555{2000000 + i % 1000:07d}"),
            ("To", to),
            ("Body", f"load {i}"),
            ("NumMedia", "0"),
        ]
        bodies.append((urlencode(params).encode(), compute_signature(url, params, token)))
    return bodies


async def run(url: str, token: str, to: str, count: int, concurrency: int) -> None:
    bodies = signed_bodies(url, token, to, count)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body, signature = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(
                url, data=body, headers={**headers, "X-Twilio-Signature": signature}
            ) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    acked = statuses.get(200, 0)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"{count} webhooks, concurrency {concurrency}: {acked / elapsed:.0f} acknowledged/s")
    print(f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; statuses {statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the configuration's webhook_url")
    parser.add_argument("--auth-token", required=True, help="the configuration's auth token")
    parser.add_argument("--to", required=True, help="a DID of the configuration")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.auth_token, args.to, args.count, args.concurrency))


if __name__ == "__main__":
    main()
