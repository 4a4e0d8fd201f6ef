"""A faithful stand-in for Twilio's Messaging API, for demos and for the project's tests.

It serves the 2010-04-01 Messages/Media/Accounts/IncomingPhoneNumbers REST API and the Messaging
v1 Services API (one process for both hosts) with HTTP Basic auth, sends signed status callbacks
and inbound-message webhooks (routed as each number is set up), hosts inbound media behind a 307
"CDN", and is steered through a JSON control API under `/_fake/`. Magic numbers are listed in
`.magic`.
It deliberately imports nothing from the rest of `bridge`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from .app import FakeTwilio, create_app, running_fake_twilio
from .magic import OUTCOME_BY_TO, REJECT_BY_FROM, REJECT_BY_TO, SLOW_TO
from .numbers import E164, IncomingNumber, MessagingService
from .signing import compute_signature
from .state import FakeConfig, FakeState

__all__ = [
    "OUTCOME_BY_TO",
    "REJECT_BY_FROM",
    "REJECT_BY_TO",
    "SLOW_TO",
    "FakeConfig",
    "FakeState",
    "FakeTwilio",
    "IncomingNumber",
    "MessagingService",
    "add_arguments",
    "compute_signature",
    "create_app",
    "run",
    "running_fake_twilio",
]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `fake-twilio` options to a (sub)parser."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8089, help="listen port (default 8089)")
    parser.add_argument("--account-sid", help="account to register (AC + 32 hex; generated)")
    parser.add_argument("--auth-token", help="its auth token (generated when omitted)")
    parser.add_argument(
        "--number",
        action="append",
        default=[],
        metavar="E164",
        help="provision this phone number on the account (repeatable; SmsUrl left empty)",
    )
    parser.add_argument(
        "--whatsapp-sender",
        action="append",
        default=[],
        metavar="E164",
        help="register this number as a WhatsApp sender of the account (repeatable)",
    )
    parser.add_argument("--api-key-sid", help="also register this API key (SK + 32 hex)")
    parser.add_argument("--api-key-secret", help="secret of --api-key-sid")
    parser.add_argument(
        "--api-key-kind", choices=("standard", "main"), default="standard", help="key type"
    )
    parser.add_argument(
        "--callback-delay",
        type=float,
        default=0.5,
        help="seconds between status transitions/callbacks (default 0.5)",
    )
    parser.add_argument(
        "--slow-delay", type=float, default=5.0, help="delay of slow answers (default 5)"
    )
    parser.add_argument(
        "--public-url", help="base URL others use to reach the fake (media URLs, redirects)"
    )
    parser.add_argument(
        "--fetch-media",
        action="store_true",
        help="fetch outbound MediaUrls (HEAD+GET) like Twilio before sending",
    )


def run(args: argparse.Namespace) -> int:
    """Serve the fake until SIGINT/SIGTERM, logging to stdout; returns the exit code."""
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if bool(args.api_key_sid) != bool(args.api_key_secret):
        print("fake-twilio: --api-key-sid and --api-key-secret go together", file=sys.stderr)
        return 2
    invalid = [n for n in [*args.number, *args.whatsapp_sender] if not E164.fullmatch(n)]
    if invalid or len(set(args.number)) != len(args.number):
        shown = ", ".join(invalid) or "a number given twice"
        print(f"fake-twilio: --number takes distinct E.164 numbers ({shown})", file=sys.stderr)
        return 2
    config = FakeConfig(
        callback_delay=args.callback_delay,
        slow_delay=args.slow_delay,
        public_base_url=args.public_url,
        fetch_media=args.fetch_media,
    )
    try:
        asyncio.run(_serve(args, config))
    except OSError as exc:
        print(f"fake-twilio: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(args: argparse.Namespace, config: FakeConfig) -> None:
    async with running_fake_twilio(config, host=args.host, port=args.port) as fake:
        account = fake.add_account(
            args.account_sid,
            args.auth_token,
            numbers=args.number,
            whatsapp_senders=args.whatsapp_sender,
        )
        if args.api_key_sid:
            fake.state.add_key(
                account.sid,
                kind=args.api_key_kind,
                sid=args.api_key_sid,
                secret=args.api_key_secret,
            )
        log.info("fake_twilio.listening base_url=%s account_sid=%s", fake.base_url, account.sid)
        for number in fake.state.directory.account_numbers(account.sid):
            log.info("fake_twilio.number phone_number=%s sid=%s", number.phone_number, number.sid)
        if not args.auth_token:
            # A generated token is useless unless the operator can read it.
            log.info("fake_twilio.generated_auth_token auth_token=%s", account.auth_token)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("fake_twilio.stopping")
