"""The OpenAPI document, generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

import bridge
from bridge.web.api import PREFIX, ApiRoute

_PATH_PARAM = re.compile(r"{(\w+)}")
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        }
    },
}


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
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PATH_PARAM.findall(route.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in route.query
        ]
        responses: dict[str, Any] = {}
        if route.response is None:
            responses[str(route.status)] = {"description": "Done"}
        else:
            responses[str(route.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": refs[(i, "response")]}},
            }
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
            "parameters": params,
            "responses": responses,
            "security": [{"bearer": []}],
        }
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
            "schemas": {**defs, "Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
