"""pbx-sms-bridge: SMS/MMS between a multi-tenant SIP PBX and Twilio."""

from __future__ import annotations

__version__ = "0.1.0"
