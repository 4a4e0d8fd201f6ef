"""Everything that speaks Twilio's protocols: signatures, encodings, the REST client."""

from __future__ import annotations
