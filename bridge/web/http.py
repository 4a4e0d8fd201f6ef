"""The web edge: the one table from errors to statuses, JSON bodies in and out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from bridge.errors import (
    BridgeError,
    Conflict,
    DatabaseUnavailable,
    FieldProblem,
    Forbidden,
    InvalidInput,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from bridge.twilio.client import TwilioError, TwilioRejected

T = TypeVar("T")

STATUS_OF: tuple[tuple[type[BridgeError], int], ...] = (
    (DatabaseUnavailable, 503),
    (TwilioRejected, 422),
    (TwilioError, 502),
    (MalformedRequest, 400),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
)


def status_of(error: BridgeError) -> int:
    for kind, status in STATUS_OF:
        if isinstance(error, kind):
            return status
    return 500


def error_body(
    code: str, message: str, details: Sequence[FieldProblem] = ()
) -> dict[str, dict[str, object]]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": d.field, "message": d.message} for d in details],
        }
    }


def error_response(
    status: int, code: str, message: str, details: Sequence[FieldProblem] = ()
) -> web.Response:
    return web.json_response(error_body(code, message, details), status=status)


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("numbers", 0, "number")`` → ``numbers[0].number``; union tags are left out."""
    path = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif (
            i > 0
            and loc[i - 1] == "credential"
            and part in ("auth_token", "api_key")
            and i + 1 < len(loc)
        ):
            continue
        else:
            path += f".{part}" if path else part
    return path or "body"


def invalid_from(exc: ValidationError) -> InvalidInput:
    problems = tuple(
        FieldProblem(field_path(tuple(err["loc"])), err["msg"].removeprefix("Value error, "))
        for err in exc.errors()
    )
    return InvalidInput("; ".join(f"{p.field}: {p.message}" for p in problems), details=problems)


def _has_nul(value: Any) -> bool:
    """PostgreSQL text cannot hold U+0000; such input is refused rather than failing later."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


async def read_json(request: web.Request) -> Any:
    """The JSON body; its size is bounded by the app's client_max_size (413 beyond)."""
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedRequest("the body is not valid JSON") from exc
    if _has_nul(data):
        raise MalformedRequest("the body contains a NUL character")
    return data


async def parse_body(
    request: web.Request, adapter: TypeAdapter[T], context: dict[str, object] | None = None
) -> T:
    """Read the JSON body and validate it; every problem names its field."""
    data = await read_json(request)
    try:
        return adapter.validate_python(data, context=context)
    except ValidationError as exc:
        raise invalid_from(exc) from None


def model_response(
    model: BaseModel, status: int = 200, *, exclude_unset: bool = False
) -> web.Response:
    """``exclude_unset``: for answers whose keys that do not apply are left out, not null."""
    return web.Response(
        body=model.model_dump_json(by_alias=True, exclude_unset=exclude_unset),
        status=status,
        content_type="application/json",
    )
