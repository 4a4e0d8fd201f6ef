"""The OpenAPI document, generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

import bridge
from bridge.web.api import PATH_PARAMS, PREFIX, ApiRoute
from bridge.web.params import Param, untyped

_PATH_PARAM = re.compile(r"{(\w+)}")
# As bridge.web.http.error_body writes them; named, so a generated client names them too.
_ERRORS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"$ref": "#/components/schemas/ErrorInfo"}},
    },
    "ErrorInfo": {
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "string", "description": "Stable, e.g. validation_error, no_route"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorDetail"}},
        },
    },
    "ErrorDetail": {
        "type": "object",
        "required": ["field", "message"],
        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
    },
}
_NON_JSON_SCHEMA: dict[str, dict[str, str]] = {
    "text/event-stream": {"type": "string"},
    "application/octet-stream": {"type": "string", "format": "binary"},
}


def _parameters(route: ApiRoute) -> list[dict[str, Any]]:
    """Path parameters by name (the route may declare its own), then the route's others."""
    declared = {p.name: p for p in route.params}
    path: list[Param[Any]] = [
        declared.get(name) or PATH_PARAMS.get(name) or _plain_path(name)
        for name in _PATH_PARAM.findall(route.path)
    ]
    others = [p for p in route.params if p.where != "path"]
    others += [untyped(name) for name in route.query]
    return [p.document() for p in (*path, *others)]


def _plain_path(name: str) -> Param[str]:
    return Param(name=name, description=name, schema={"type": "string"}, parse=str, where="path")


def _schemas(routes: tuple[ApiRoute, ...]) -> tuple[dict[str, Any], dict[tuple[int, str], Any]]:
    """One shared components section for every request and response type."""
    inputs: list[tuple[tuple[int, str], JsonSchemaMode, Any]] = []
    for i, route in enumerate(routes):
        if route.body is not None:
            inputs.append(((i, "body"), "validation", TypeAdapter(route.body).core_schema))
        if route.response is not None:
            inputs.append(
                ((i, "response"), "serialization", TypeAdapter(route.response).core_schema)
            )
    refs, defs = GenerateJsonSchema(
        ref_template="#/components/schemas/{model}"
    ).generate_definitions(inputs)
    return {str(k): v for k, v in defs.items()}, {key: ref for (key, _mode), ref in refs.items()}


def openapi_document(routes: tuple[ApiRoute, ...]) -> dict[str, Any]:
    defs, refs = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for i, route in enumerate(routes):
        responses: dict[str, Any] = {}
        if route.response is not None:
            responses[str(route.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": refs[(i, "response")]}},
            }
        elif route.media_type != "application/json":
            schema = _NON_JSON_SCHEMA.get(route.media_type, {"type": "string"})
            responses[str(route.status)] = {
                "description": route.description or "OK",
                "content": {route.media_type: {"schema": schema}},
            }
        else:
            responses[str(route.status)] = {"description": "Done"}
        error_ref = {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        }
        for status, what in (
            ("400", "Malformed JSON"),
            ("401", "Missing or unknown token"),
            ("403", "Administrator only"),
            ("404", "Not found (or another tenant's)"),
            ("409", "Conflict"),
            ("422", "A field failed validation"),
        ):
            responses[status] = {"description": what, **error_ref}
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "parameters": _parameters(route),
            "responses": responses,
            "security": [{"bearer": []}],
        }
        notes = [route.description] if route.description else []
        if route.admin_only:
            notes.append("Administrator only: a tenant token gets 403.")
        if notes:
            operation["description"] = " ".join(notes)
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(i, "body")]}},
            }
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "pbx-sms-bridge internal API", "version": bridge.__version__},
        "paths": paths,
        "components": {
            "schemas": {**defs, **_ERRORS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
