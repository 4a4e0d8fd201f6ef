"""Phone numbers (IncomingPhoneNumbers, 2010-04-01) and Messaging Services (Messaging v1)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from .formats import (
    ACCOUNTS_PREFIX,
    API_VERSION,
    SERVICES_PREFIX,
    country_of,
    iso8601,
    new_sid,
    rfc2822,
)
from .records import JSONValue, utcnow

HttpMethod = Literal["GET", "POST"]
ScanMessageContent = Literal["inherit", "enable", "disable"]

E164 = re.compile(r"\+[1-9]\d{6,14}")
_NANP = re.compile(r"\+1(\d{3})(\d{3})(\d{4})")


def display_name(phone_number: str) -> str:
    """Twilio's default friendly name: `(808) 925-5327` for NANP numbers, else the number."""
    match = _NANP.fullmatch(phone_number)
    return f"({match[1]}) {match[2]}-{match[3]}" if match else phone_number


@dataclass
class Capabilities:
    """What a number can do; Twilio reports all four, each true or false."""

    voice: bool = True
    sms: bool = True
    mms: bool = True
    fax: bool = False

    def to_json(self) -> dict[str, JSONValue]:
        """The `capabilities` object of an IncomingPhoneNumber."""
        return {"voice": self.voice, "sms": self.sms, "mms": self.mms, "fax": self.fax}

    def names(self) -> list[JSONValue]:
        """The capability list of a Messaging Service's PhoneNumber (`["MMS", "SMS", "Voice"]`)."""
        present = (("MMS", self.mms), ("SMS", self.sms), ("Voice", self.voice), ("Fax", self.fax))
        return [name for name, enabled in present if enabled]


@dataclass
class IncomingNumber:
    """A phone number of an account, with the webhooks Twilio calls for it.

    Unset URLs are "" as Twilio shows them; `service_sid` is the Messaging Service the number
    belongs to, if any (Twilio shows it only on the service's PhoneNumbers list).
    """

    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    capabilities: Capabilities = field(default_factory=Capabilities)
    sms_url: str = ""
    sms_method: HttpMethod = "POST"
    sms_fallback_url: str = ""
    sms_fallback_method: HttpMethod = "POST"
    status_callback: str = ""
    status_callback_method: HttpMethod = "POST"
    voice_url: str = ""
    voice_method: HttpMethod = "POST"
    voice_fallback_url: str = ""
    voice_fallback_method: HttpMethod = "POST"
    service_sid: str | None = None
    joined_service: datetime | None = None
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)

    @property
    def uri(self) -> str:
        """Relative URI of the IncomingPhoneNumber resource."""
        return f"{ACCOUNTS_PREFIX}/{self.account_sid}/IncomingPhoneNumbers/{self.sid}.json"

    def resource(self) -> dict[str, JSONValue]:
        """The `api.v2010.account.incoming_phone_number` JSON."""
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": self.capabilities.to_json(),
            "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.updated),
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "friendly_name": self.friendly_name,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": self.phone_number,
            "sid": self.sid,
            "sms_application_sid": "",
            "sms_fallback_method": self.sms_fallback_method,
            "sms_fallback_url": self.sms_fallback_url,
            "sms_method": self.sms_method,
            "sms_url": self.sms_url,
            "status": "in-use",
            "status_callback": self.status_callback,
            "status_callback_method": self.status_callback_method,
            "trunk_sid": None,
            "type": "local",
            "uri": self.uri,
            "voice_application_sid": "",
            "voice_caller_id_lookup": False,
            # The spec's examples show unset voice URLs as null but unset SMS URLs as "".
            "voice_fallback_method": self.voice_fallback_method,
            "voice_fallback_url": self.voice_fallback_url or None,
            "voice_method": self.voice_method,
            "voice_receive_mode": "voice",
            "voice_url": self.voice_url or None,
        }

    def service_resource(self, base_url: str) -> dict[str, JSONValue]:
        """The `messaging.v1.service.phone_number` JSON (only for a number in a service)."""
        joined = self.joined_service or self.created
        return {
            "account_sid": self.account_sid,
            "capabilities": self.capabilities.names(),
            "country_code": country_of(self.phone_number) or None,
            "date_created": iso8601(joined),
            "date_updated": iso8601(joined),
            "phone_number": self.phone_number,
            "service_sid": self.service_sid,
            "sid": self.sid,
            "url": f"{base_url}{SERVICES_PREFIX}/{self.service_sid}/PhoneNumbers/{self.sid}",
        }


@dataclass
class MessagingService:
    """A Messaging Service: a sender pool with its own inbound webhook.

    `inbound_request_url` None means the service drops inbound messages, unless
    `use_inbound_webhook_on_number` defers to each number's own SmsUrl.
    """

    sid: str
    account_sid: str
    friendly_name: str
    inbound_request_url: str | None = None
    inbound_method: HttpMethod = "POST"
    fallback_url: str | None = None
    fallback_method: HttpMethod = "POST"
    status_callback: str | None = None
    use_inbound_webhook_on_number: bool = False
    sticky_sender: bool = True
    mms_converter: bool = True
    smart_encoding: bool = True
    scan_message_content: ScanMessageContent = "inherit"
    fallback_to_long_code: bool = False
    area_code_geomatch: bool = True
    validity_period: int = 36000
    synchronous_validation: bool = True
    usecase: str = "undeclared"
    # An RCS sender (its id, without `rcs:`): Twilio then sends RCS first to phone numbers.
    rcs_sender: str | None = None
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)

    def url(self, base_url: str) -> str:
        """Absolute URL of the service, as the Messaging API gives it."""
        return f"{base_url}{SERVICES_PREFIX}/{self.sid}"

    def resource(self, base_url: str) -> dict[str, JSONValue]:
        """The `messaging.v1.service` JSON; its URLs are absolute, on `base_url`."""
        url = self.url(base_url)
        links: dict[str, JSONValue] = {
            "phone_numbers": f"{url}/PhoneNumbers",
            "short_codes": f"{url}/ShortCodes",
            "alpha_senders": f"{url}/AlphaSenders",
            "messages": f"{url}/Messages",
            "us_app_to_person": f"{url}/Compliance/Usa2p",
            "us_app_to_person_usecases": f"{url}/Compliance/Usa2p/Usecases",
            "channel_senders": f"{url}/ChannelSenders",
            "destination_alpha_senders": f"{url}/DestinationAlphaSenders",
        }
        return {
            "account_sid": self.account_sid,
            "area_code_geomatch": self.area_code_geomatch,
            "date_created": iso8601(self.created),
            "date_updated": iso8601(self.updated),
            "fallback_method": self.fallback_method,
            "fallback_to_long_code": self.fallback_to_long_code,
            "fallback_url": self.fallback_url,
            "friendly_name": self.friendly_name,
            "inbound_method": self.inbound_method,
            "inbound_request_url": self.inbound_request_url,
            "links": links,
            "mms_converter": self.mms_converter,
            "scan_message_content": self.scan_message_content,
            "sid": self.sid,
            "smart_encoding": self.smart_encoding,
            "status_callback": self.status_callback,
            "sticky_sender": self.sticky_sender,
            "synchronous_validation": self.synchronous_validation,
            "url": url,
            "us_app_to_person_registered": False,
            "use_inbound_webhook_on_number": self.use_inbound_webhook_on_number,
            "usecase": self.usecase,
            "validity_period": self.validity_period,
        }


class NumberOwner(Protocol):
    """What the directory needs of an account: the list of numbers it may send from."""

    numbers: list[str]


class NumberDirectory:
    """Every account's phone numbers and Messaging Services."""

    def __init__(self, accounts: Mapping[str, NumberOwner]) -> None:
        self._accounts = accounts
        self.numbers: dict[str, IncomingNumber] = {}
        self.services: dict[str, MessagingService] = {}

    def add_number(
        self,
        account_sid: str,
        phone_number: str,
        *,
        sid: str | None = None,
        friendly_name: str | None = None,
        capabilities: Capabilities | None = None,
        sms_url: str = "",
        sms_method: HttpMethod = "POST",
        sms_fallback_url: str = "",
        sms_fallback_method: HttpMethod = "POST",
        status_callback: str = "",
        voice_url: str = "",
        service_sid: str | None = None,
    ) -> IncomingNumber:
        """Give an account a phone number (KeyError: unknown account or service).

        ValueError if the number is not E.164 or already belongs to some account, as a number
        can only be on one account; the number also joins `account.numbers`.
        """
        account = self._accounts[account_sid]
        if not E164.fullmatch(phone_number):
            raise ValueError(f"{phone_number} is not an E.164 phone number")
        if self.number_for(phone_number) is not None:
            raise ValueError(f"{phone_number} is already provisioned")
        service = self._service_of(account_sid, service_sid) if service_sid else None
        number = IncomingNumber(
            sid=sid or new_sid("PN"),
            account_sid=account_sid,
            phone_number=phone_number,
            friendly_name=friendly_name or display_name(phone_number),
            capabilities=capabilities or Capabilities(),
            sms_url=sms_url,
            sms_method=sms_method,
            sms_fallback_url=sms_fallback_url,
            sms_fallback_method=sms_fallback_method,
            status_callback=status_callback,
            voice_url=voice_url,
        )
        if number.sid in self.numbers:
            raise ValueError(f"{number.sid} already exists")
        self.numbers[number.sid] = number
        if phone_number not in account.numbers:
            account.numbers.append(phone_number)
        if service is not None:
            self._join(number, service)
        return number

    def add_service(
        self,
        account_sid: str,
        *,
        sid: str | None = None,
        friendly_name: str = "Fake Messaging Service",
        inbound_request_url: str | None = None,
        inbound_method: HttpMethod = "POST",
        fallback_url: str | None = None,
        fallback_method: HttpMethod = "POST",
        status_callback: str | None = None,
        use_inbound_webhook_on_number: bool = False,
        numbers: Iterable[str] = (),
        rcs_sender: str | None = None,
    ) -> MessagingService:
        """Create a Messaging Service with `numbers` (E.164 or PN SIDs) in its sender pool.

        Unknown E.164 numbers are provisioned on the account first. KeyError for an unknown
        account or PN SID; ValueError for a taken SID, or a number of another account or
        already in another service (a number can be in one service only).
        """
        if account_sid not in self._accounts:
            raise KeyError(account_sid)
        service = MessagingService(
            sid=sid or new_sid("MG"),
            account_sid=account_sid,
            friendly_name=friendly_name,
            inbound_request_url=inbound_request_url,
            inbound_method=inbound_method,
            fallback_url=fallback_url,
            fallback_method=fallback_method,
            status_callback=status_callback,
            use_inbound_webhook_on_number=use_inbound_webhook_on_number,
            rcs_sender=rcs_sender,
        )
        if service.sid in self.services:
            raise ValueError(f"{service.sid} already exists")
        members: list[IncomingNumber] = []
        fresh: list[str] = []
        for ref in dict.fromkeys(numbers):
            found = self.numbers.get(ref) if ref.startswith("PN") else self.number_for(ref)
            if found is None and ref.startswith("PN"):
                raise KeyError(ref)
            if found is None:
                if not E164.fullmatch(ref):
                    raise ValueError(f"{ref} is not an E.164 phone number")
                fresh.append(ref)
            elif found.account_sid != account_sid:
                raise ValueError(f"{ref} belongs to another account")
            elif found.service_sid is not None:
                raise ValueError(f"{ref} is already in Messaging Service {found.service_sid}")
            else:
                members.append(found)
        self.services[service.sid] = service
        members.extend(self.add_number(account_sid, phone) for phone in fresh)
        for number in members:
            self._join(number, service)
        return service

    def find_number(self, account_sid: str, sid: str) -> IncomingNumber | None:
        """An IncomingPhoneNumber of this account, or None."""
        number = self.numbers.get(sid)
        return number if number is not None and number.account_sid == account_sid else None

    def number_for(
        self, phone_number: str, account_sid: str | None = None
    ) -> IncomingNumber | None:
        """The provisioned number `phone_number` (on that account if given), or None."""
        for number in self.numbers.values():
            if number.phone_number == phone_number:
                return number if account_sid in (None, number.account_sid) else None
        return None

    def account_numbers(self, account_sid: str) -> list[IncomingNumber]:
        """An account's numbers in the order they were provisioned."""
        return [n for n in self.numbers.values() if n.account_sid == account_sid]

    def find_service(self, account_sid: str, sid: str) -> MessagingService | None:
        """A Messaging Service of this account, or None."""
        service = self.services.get(sid)
        return service if service is not None and service.account_sid == account_sid else None

    def service_numbers(self, service: MessagingService) -> list[IncomingNumber]:
        """The numbers in a service's sender pool, in the order they were provisioned."""
        return [n for n in self.numbers.values() if n.service_sid == service.sid]

    def _service_of(self, account_sid: str, sid: str) -> MessagingService:
        service = self.find_service(account_sid, sid)
        if service is None:
            raise KeyError(sid)
        return service

    def _join(self, number: IncomingNumber, service: MessagingService) -> None:
        number.service_sid = service.sid
        number.joined_service = utcnow()

    def forget_account(self, account_sid: str) -> None:
        """Drop an account's numbers and services (the account is being replaced)."""
        for sid in [s for s, n in self.numbers.items() if n.account_sid == account_sid]:
            del self.numbers[sid]
        for sid in [s for s, v in self.services.items() if v.account_sid == account_sid]:
            del self.services[sid]

    def clear(self) -> None:
        """Forget every number and service."""
        self.numbers.clear()
        self.services.clear()
