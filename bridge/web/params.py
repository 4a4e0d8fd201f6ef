"""Path, query and header parameters: one declaration is both the handler's check and the
OpenAPI document's description, so the two cannot disagree."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web

from bridge.errors import InvalidInput

T = TypeVar("T")
Where = Literal["path", "query", "header"]


@dataclass(frozen=True, kw_only=True)
class Param(Generic[T]):
    """One parameter. ``parse`` raises ValueError with what the caller is told; ``schema`` is
    the JSON schema of exactly the values ``parse`` accepts."""

    name: str
    description: str
    schema: Mapping[str, Any]
    parse: Callable[[str], T]
    where: Where = "query"
    default: T | None = None

    def read(self, request: web.Request) -> T | None:
        """The parameter's value; its default (or None) when the request has none."""
        if self.where == "path":
            raw = request.match_info.get(self.name)
        elif self.where == "header":
            raw = request.headers.get(self.name)
        else:
            raw = request.query.get(self.name)
        if raw is None:
            return self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise InvalidInput.field(self.name, str(exc)) from None

    def value(self, request: web.Request) -> T:
        """The value, for a parameter that is always there (a path's, or one with a default)."""
        found = self.read(request)
        if found is None:
            raise InvalidInput.field(self.name, "is required")
        return found

    def document(self) -> dict[str, Any]:
        """The OpenAPI parameter object."""
        schema = dict(self.schema)
        if self.default is not None:
            schema["default"] = self.default
        return {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path",
            "description": self.description,
            "schema": schema,
        }


def integer(
    name: str,
    description: str,
    *,
    minimum: int,
    maximum: int,
    default: int | None = None,
    where: Where = "query",
) -> Param[int]:
    """A whole number written in ASCII digits, from ``minimum`` (at least 0) to ``maximum``."""
    message = f"must be a whole number from {minimum} to {maximum}"

    def parse(raw: str) -> int:
        # Bounded before int(): Python refuses (or slowly converts) thousands of digits.
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise ValueError(message)
        if not minimum <= int(raw) <= maximum:
            raise ValueError(message)
        return int(raw)

    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return Param(
        name=name, description=description, schema=schema, parse=parse, where=where, default=default
    )


def text(
    name: str,
    description: str,
    *,
    min_length: int = 0,
    max_length: int = 200,
    pattern: str | None = None,
    where: Where = "query",
) -> Param[str]:
    """A string of ``min_length`` to ``max_length`` characters, matching ``pattern`` if given."""
    compiled = re.compile(pattern) if pattern else None

    def parse(raw: str) -> str:
        if not min_length <= len(raw) <= max_length:
            raise ValueError(f"must be {min_length}-{max_length} characters")
        if compiled is not None and not compiled.search(raw):
            raise ValueError(f"must match {pattern}")
        return raw

    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if min_length:
        schema["minLength"] = min_length
    if pattern:
        schema["pattern"] = pattern
    return Param(name=name, description=description, schema=schema, parse=parse, where=where)


def choice(name: str, description: str, options: Mapping[str, T]) -> Param[T]:
    """One of a fixed set of words (a Literal's values)."""
    words = list(options)
    message = "must be one of " + ", ".join(words)

    def parse(raw: str) -> T:
        if raw not in options:
            raise ValueError(message)
        return options[raw]

    schema = {"type": "string", "enum": words}
    return Param(name=name, description=description, schema=schema, parse=parse)


def flag(name: str, description: str, *, default: bool = False) -> Param[bool]:
    """``true`` or ``false`` (as the document's boolean is written in a query string)."""
    values = {"true": True, "false": False}

    def parse(raw: str) -> bool:
        found = values.get(raw.lower())
        if found is None:
            raise ValueError("must be true or false")
        return found

    return Param(
        name=name,
        description=description,
        schema={"type": "boolean"},
        parse=parse,
        default=default,
    )


def untyped(name: str) -> Param[str]:
    """A query parameter declared by name only (``ApiRoute.query``): any string."""
    return Param(name=name, description="", schema={"type": "string"}, parse=str)
