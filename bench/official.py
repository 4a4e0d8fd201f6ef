"""The comparison for outbound: Twilio's own Python library, as its docs use it, from threads.

    python -m bench.official --api-base URL --account-sid AC… --auth-token … \
        --from +1… --to +1… --count N --threads T

Prints one line: ``OFFICIAL count=N seconds=S rate=R``. Each thread has its own client and
HTTP session (the library's sessions are not shared between threads).
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--from", dest="from_", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()

    local = threading.local()

    def client() -> Client:
        if not hasattr(local, "client"):
            local.client = Client(
                args.account_sid, args.auth_token, http_client=TwilioHttpClient(timeout=30)
            )
            local.client.api.base_url = args.api_base
        found: Client = local.client
        return found

    def send(i: int) -> str:
        message = client().messages.create(to=args.to, from_=args.from_, body=f"official {i}")
        return str(message.sid)

    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        # One warm-up per thread, so connection set-up is not counted.
        list(pool.map(send, range(args.threads)))
        started = time.perf_counter()
        sids = list(pool.map(send, range(args.count)))
        seconds = time.perf_counter() - started
    assert len(set(sids)) == args.count
    print(f"OFFICIAL count={args.count} seconds={seconds:.3f} rate={args.count / seconds:.1f}")


if __name__ == "__main__":
    main()
