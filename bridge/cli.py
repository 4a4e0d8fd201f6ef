"""Command line: parse arguments, load settings, map outcomes to exit codes. No logic here."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from bridge import __version__, fake_twilio
from bridge.config import Settings, load_settings
from bridge.crypto import generate_key
from bridge.errors import BridgeError, ConfigError
from bridge.log import Redactor, configure_logging, get_logger
from bridge.runtime.bootstrap import load_runtime_secrets
from bridge.runtime.maintenance import migrate_database, reseal_secrets

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

log = get_logger("bridge.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sms-bridge", description="SMS/MMS bridge for a PBX")
    parser.add_argument("--version", action="version", version=f"sms-bridge {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    serve = verbs.add_parser("serve", help="run the daemon")
    serve.add_argument(
        "--no-migrate", action="store_true", help="refuse to start on an old schema instead"
    )
    verbs.add_parser("migrate", help="bring the database schema up to date, then exit")
    verbs.add_parser("check-config", help="validate the configuration; binds and changes nothing")
    verbs.add_parser("gen-key", help="print a new value for BRIDGE_SECRET_KEY")
    verbs.add_parser(
        "rotate-secrets",
        help="re-encrypt stored secrets with BRIDGE_SECRET_KEY "
        "(the old key must be in BRIDGE_PREVIOUS_SECRET_KEYS)",
    )
    fake = verbs.add_parser("fake-twilio", help="run a local Twilio stand-in for demos and tests")
    fake_twilio.add_arguments(fake)
    return parser


def _run_daemon(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop where it is installed: most of the daemon's time goes to socket writes and
    task switches, which uvloop does in C."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _settings(redactor: Redactor) -> Settings:
    """Load the settings, and from then on redact every secret they hold from every log line."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, redactor)
    redactor.add_known(*settings.secret_values())
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verb == "gen-key":
        print(generate_key())
        return EXIT_OK
    if args.verb == "fake-twilio":
        configure_logging()
        return fake_twilio.run(args)
    redactor = Redactor()
    try:
        settings = _settings(redactor)
        if args.verb == "check-config":
            print("configuration OK")
            return EXIT_OK
        secrets = load_runtime_secrets(settings)
        # Generated on a first start: no setting held them, and they must not reach a log.
        redactor.add_known(secrets.admin_token)
        if args.verb == "serve":
            from bridge.runtime.daemon import serve

            if args.no_migrate:
                settings = settings.model_copy(update={"migrate_on_start": False})
            _run_daemon(serve(settings, secrets))
        elif args.verb == "migrate":
            applied = asyncio.run(migrate_database(settings))
            print(f"migrations applied: {applied or 'none, already current'}")
        elif args.verb == "rotate-secrets":
            print(f"secrets re-encrypted: {asyncio.run(reseal_secrets(settings, secrets))}")
    except ConfigError as exc:
        print(f"sms-bridge: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except BridgeError as exc:
        log.error("cli.failed", verb=args.verb, error=exc.code, message=exc.message)
        print(f"sms-bridge: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    return EXIT_OK
