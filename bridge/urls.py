"""The public URL layout (design §7): what Twilio is given, and what the public listener serves."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

# Webhook and media tokens are `secrets.token_urlsafe`: anything else in that place of a path is
# unknown without asking the database.
TOKEN = "{token:[A-Za-z0-9_-]+}"


@dataclass(frozen=True)
class PublicUrls:
    """URLs under ``BRIDGE_PUBLIC_BASE_URL``: built for Twilio, and routed by the listener."""

    base: str

    @property
    def origin(self) -> str:
        """Scheme, host and port: what Twilio signed, whatever Host header a proxy sends."""
        parts = urlsplit(self.base)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def prefix(self) -> str:
        """The path the public listener serves under, as a reverse proxy passes it through."""
        return urlsplit(self.base).path.rstrip("/")

    def inbound(self, webhook_token: str) -> str:
        return f"{self.base}/twilio/{webhook_token}/inbound"

    def status_callback(self, webhook_token: str) -> str:
        return f"{self.base}/twilio/{webhook_token}/status"

    def media(self, media_token: str) -> str:
        return f"{self.base}/media/{media_token}"

    # Route templates for the listener, the same layout with the token as a path variable.
    @property
    def inbound_route(self) -> str:
        return f"{self.prefix}/twilio/{TOKEN}/inbound"

    @property
    def status_route(self) -> str:
        return f"{self.prefix}/twilio/{TOKEN}/status"

    @property
    def media_route(self) -> str:
        return f"{self.prefix}/media/{TOKEN}"
