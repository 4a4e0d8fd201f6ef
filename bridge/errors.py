"""The bridge's typed errors. HTTP statuses live at the web edge, never here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One field that failed validation, named as the API client wrote it."""

    field: str
    message: str


class BridgeError(Exception):
    """Something went wrong in the bridge."""

    code = "internal_error"

    def __init__(self, message: str | None = None, *, details: tuple[FieldProblem, ...] = ()):
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)


class ConfigError(BridgeError):
    """The configuration is invalid."""

    code = "config_error"


class NotFound(BridgeError):
    """The resource does not exist."""

    code = "not_found"


class TenantNotFound(NotFound):
    """tenant not found"""


class InvalidInput(BridgeError):
    """A field failed validation."""

    code = "validation_error"

    @classmethod
    def field(cls, field: str, message: str) -> InvalidInput:
        return cls(f"{field}: {message}", details=(FieldProblem(field, message),))


class Conflict(BridgeError):
    """The request conflicts with the current state."""

    code = "conflict"


class SchemaTooNew(BridgeError):
    """The database schema is newer than this version of sms-bridge: upgrade sms-bridge first."""

    code = "schema_too_new"


class SecretKeyMissing(BridgeError):
    """A stored secret was encrypted with a key this process does not have."""

    code = "secret_key_missing"


class MalformedRequest(BridgeError):
    """The request body is not valid JSON."""

    code = "malformed_request"


class PayloadTooLarge(BridgeError):
    """The request body is larger than this listener accepts."""

    code = "body_too_large"


class UnsupportedMediaType(BridgeError):
    """The request body is not of a content type this route accepts."""

    code = "unsupported_media_type"


class Unauthorized(BridgeError):
    """A valid bearer token is required."""

    code = "unauthorized"


class Forbidden(BridgeError):
    """Only the system administrator may do this."""

    code = "forbidden"


class BadSignature(Forbidden):
    """The request's signature does not match."""

    code = "bad_signature"


class InUse(Conflict):
    """The resource is still referenced by another one."""

    code = "in_use"


class DatabaseUnavailable(BridgeError):
    """The database cannot be reached."""

    code = "database_unavailable"


class ListenFailed(BridgeError):
    """A listener could not bind its address."""

    code = "listen_failed"
