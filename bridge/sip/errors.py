"""Typed errors of the SIP layer."""

from __future__ import annotations


class SipError(Exception):
    """Root of the SIP layer's errors."""


class SipParseError(SipError, ValueError):
    """Bytes or text that are not a well-formed SIP message, header, URI or body."""


class CpimError(SipParseError):
    """A message/cpim body that does not follow RFC 3862."""


class SipTransportError(SipError, OSError):
    """A message could not be sent: no connection, connection lost, or the endpoint closed."""


class TransactionTimeout(SipError, TimeoutError):
    """Timer F fired: no final response arrived for a client transaction."""
