"""Command line: parse arguments, load settings, map outcomes to exit codes. No logic here."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from bridge import __version__, fake_twilio
from bridge.config import Settings, load_settings, override
from bridge.crypto import generate_key
from bridge.errors import BridgeError, ConfigError
from bridge.log import Redactor, configure_logging, get_logger
from bridge.runtime.bootstrap import RuntimeSecrets, load_runtime_secrets
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
    serve.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="run N worker processes sharing the listeners (config processes, default 1)",
    )
    # Set by the supervisor on the children it starts: which of them this one is, and its pid.
    serve.add_argument("--process-slot", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)
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


def _serve(settings: Settings, secrets: RuntimeSecrets, args: argparse.Namespace) -> None:
    """One daemon, or (``processes`` above 1) the supervisor of that many."""
    if args.no_migrate:
        settings = settings.model_copy(update={"migrate_on_start": False})
    if settings.processes > 1 and args.process_slot is None:
        from bridge.runtime.supervisor import supervise

        _run_daemon(supervise(settings, ["--no-migrate"] if args.no_migrate else []))
    else:
        from bridge.runtime.daemon import serve

        _run_daemon(serve(settings, secrets, slot=args.process_slot, supervisor=args.supervisor))


def _settings(redactor: Redactor) -> Settings:
    """Load the settings, and from then on redact every secret they hold from every log line."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, redactor)
    redactor.add_known(*settings.secret_values())
    return settings


def _ran_without_secrets(verb: str, settings: Settings) -> bool:
    """The verbs that seal and authenticate nothing, so no key or token is read or generated."""
    if verb == "check-config":
        print("configuration OK")
    elif verb == "migrate":
        applied = asyncio.run(migrate_database(settings))
        print(f"migrations applied: {applied or 'none, already current'}")
    else:
        return False
    return True


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
        if args.verb == "serve" and args.processes is not None:
            settings = override(settings, processes=args.processes)
        if _ran_without_secrets(args.verb, settings):
            return EXIT_OK
        secrets = load_runtime_secrets(settings)
        # Generated on a first start: no setting held them, and they must not reach a log.
        redactor.add_known(secrets.admin_token)
        if args.verb == "serve":
            _serve(settings, secrets, args)
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
