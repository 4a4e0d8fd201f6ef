"""Service: Twilio set up from the bridge (design §11) — read where each number's texts go, and
point them at the configuration's webhook URL on request."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Literal, TypeVar

from bridge.crypto import SecretBox
from bridge.db import sms_configs as repo
from bridge.db.pool import Database
from bridge.db.sms_configs import ConfigRow
from bridge.errors import InvalidInput, NotFound
from bridge.models import (
    Capabilities,
    ConfigId,
    NumberSetup,
    NumberState,
    ServiceSetup,
    SetupChange,
    TenantId,
    TwilioSetup,
    TwilioSetupApplied,
)
from bridge.models.twilio_codes import describe
from bridge.twilio.client import (
    Credentials,
    IncomingNumber,
    MessagingService,
    TwilioClient,
    TwilioError,
    TwilioRejected,
)
from bridge.twilio.credentials import rest_credentials
from bridge.urls import PublicUrls

T = TypeVar("T")


class SetupRefused(TwilioRejected):
    """Twilio refused a change to a number or a service; nothing was changed at the bridge."""

    code = "twilio_setup_refused"


class SetupFailed(TwilioError):
    """Twilio could not be asked; nothing was changed at the bridge."""

    code = "twilio_setup_failed"


def _what_twilio_said(exc: TwilioError) -> str:
    code = exc.twilio_code
    described = describe(code)
    meaning = f"{code} {described.meaning}" if described is not None else exc.message
    return meaning if described is None else f"{meaning} ({described.advice})"


class TwilioSetupService:
    """Reads and changes IncomingPhoneNumbers and the Messaging Service with the
    configuration's own credentials; every Twilio refusal names the number it concerns."""

    def __init__(self, db: Database, box: SecretBox, twilio: TwilioClient, urls: PublicUrls):
        self._db = db
        self._box = box
        self._twilio = twilio
        self._urls = urls

    async def _config(self, tenant_id: TenantId, config_id: ConfigId) -> ConfigRow:
        async with self._db.connection() as conn:
            row = await repo.get(conn, tenant_id, config_id)
        if row is None:
            raise NotFound("SMS configuration not found")
        return row

    async def config_ids(self, tenant_id: TenantId) -> list[ConfigId]:
        async with self._db.connection() as conn:
            return [row.id for row in await repo.list_page(conn, tenant_id, "", 1000)]

    def _creds(self, row: ConfigRow) -> Credentials:
        return rest_credentials(self._box, row.id, row.account_sid, row.api_key_sid, row.secrets)

    async def check(self, tenant_id: TenantId, config_id: ConfigId) -> TwilioSetup:
        """Where each number's texts go now, read from Twilio; nothing is changed."""
        row = await self._config(tenant_id, config_id)
        return await self._read(row, self._creds(row))

    async def _read(self, row: ConfigRow, creds: Credentials) -> TwilioSetup:
        webhook = self._urls.inbound(row.webhook_token)
        service, pool = await self._service(row, creds)
        numbers = []
        for number in row.numbers:
            found = await self._ask(
                number.number,
                self._twilio.list_incoming_numbers(creds, phone_number=number.number),
            )
            numbers.append(
                _state(number.number, found[0] if found else None, webhook, service, pool)
            )
        return TwilioSetup(
            config_id=row.id,
            webhook_url=webhook,
            numbers=numbers,
            messaging_service=None
            if row.messaging_service_sid is None
            else ServiceSetup(
                sid=row.messaging_service_sid,
                found=service is not None,
                inbound_request_url=None if service is None else service.inbound_request_url,
                use_inbound_webhook_on_number=None
                if service is None
                else service.use_inbound_webhook_on_number,
                numbers=sorted(pool),
            ),
        )

    async def _service(
        self, row: ConfigRow, creds: Credentials
    ) -> tuple[MessagingService | None, set[str]]:
        sid = row.messaging_service_sid
        if sid is None:
            return None, set()
        try:
            service = await self._twilio.fetch_service(creds, sid)
        except TwilioRejected as exc:
            if exc.twilio_code == 20404 or exc.http_status == 404:
                return None, set()
            raise SetupRefused(
                f"Twilio refused to read messaging service {sid}: {_what_twilio_said(exc)}"
            ) from exc
        except TwilioError as exc:
            raise SetupFailed(f"Twilio could not be asked about {sid}: {exc.message}") from exc
        numbers = await self._ask(sid, self._twilio.list_service_numbers(creds, sid))
        return service, {n.phone_number for n in numbers}

    async def _ask(self, subject: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except TwilioRejected as exc:
            raise SetupRefused(
                f"Twilio refused the request for {subject}: {_what_twilio_said(exc)}"
            ) from exc
        except TwilioError as exc:
            raise SetupFailed(f"Twilio could not be asked about {subject}: {exc.message}") from exc

    async def apply(
        self, tenant_id: TenantId, config_id: ConfigId, numbers: Sequence[str] | Literal["all"]
    ) -> TwilioSetupApplied:
        """Point the chosen numbers' texts at the webhook URL: each number's SmsUrl, or the
        service's InboundRequestUrl where the service, not the number, receives them."""
        row = await self._config(tenant_id, config_id)
        creds = self._creds(row)
        before = await self._read(row, creds)
        chosen = {n.number for n in row.numbers} if numbers == "all" else set(numbers)
        unknown = chosen - {n.number for n in row.numbers}
        if unknown:
            raise InvalidInput.field(
                "numbers", f"{sorted(unknown)[0]} is not a number of this configuration"
            )
        webhook = before.webhook_url
        changes: list[SetupChange] = []
        service_done = False
        for number in before.numbers:
            if number.number not in chosen or number.state == "ok":
                continue
            if number.state == "not_on_account":
                raise SetupRefused(
                    f"{number.number} is not a number of Twilio account "
                    f"{row.account_sid}; nothing was changed for it" + _done(changes)
                )
            if number.state == "service_overrides":
                service = before.messaging_service
                if service is None or service_done:
                    continue
                changes += await self._point_service(creds, service, webhook, changes)
                service_done = True
                continue
            assert number.twilio_sid is not None
            try:
                await self._twilio.update_incoming_number(
                    creds, number.twilio_sid, sms_url=webhook, sms_method="POST"
                )
            except TwilioError as exc:
                raise _refused(f"to update {number.number}", exc, changes) from exc
            changes.append(
                SetupChange(
                    target="number",
                    sid=number.twilio_sid,
                    number=number.number,
                    field="SmsUrl",
                    previous=number.sms_url,
                    new=webhook,
                )
            )
            if number.sms_method != "POST":
                changes.append(
                    SetupChange(
                        target="number",
                        sid=number.twilio_sid,
                        number=number.number,
                        field="SmsMethod",
                        previous=number.sms_method,
                        new="POST",
                    )
                )
        return TwilioSetupApplied(changes=changes, setup=await self._read(row, creds))

    async def _point_service(
        self, creds: Credentials, service: ServiceSetup, webhook: str, done: list[SetupChange]
    ) -> list[SetupChange]:
        try:
            await self._twilio.update_service(
                creds, service.sid, inbound_request_url=webhook, inbound_method="POST"
            )
        except TwilioError as exc:
            raise _refused(f"to update messaging service {service.sid}", exc, done) from exc
        return [
            SetupChange(
                target="messaging_service",
                sid=service.sid,
                field="InboundRequestUrl",
                previous=service.inbound_request_url,
                new=webhook,
            )
        ]


def _done(changes: list[SetupChange]) -> str:
    if not changes:
        return ""
    return "; already changed: " + ", ".join(
        f"{c.number or c.sid} {c.field} (was {c.previous or 'empty'})" for c in changes
    )


def _refused(what: str, exc: TwilioError, changes: list[SetupChange]) -> TwilioError:
    if isinstance(exc, TwilioRejected):
        return SetupRefused(f"Twilio refused {what}: {_what_twilio_said(exc)}{_done(changes)}")
    return SetupFailed(f"Twilio could not be asked {what}: {exc.message}{_done(changes)}")


def _state(
    number: str,
    found: IncomingNumber | None,
    webhook: str,
    service: MessagingService | None,
    pool: set[str],
) -> NumberSetup:
    if found is None:
        return NumberSetup(
            number=number,
            found=False,
            state="not_on_account",
            detail=f"{number} is not a number of this Twilio account: texts to it never reach "
            "this account",
        )

    def seen(state: NumberState, detail: str) -> NumberSetup:
        return NumberSetup(
            number=number,
            found=True,
            twilio_sid=found.sid,
            capabilities=Capabilities(sms=found.capabilities.sms, mms=found.capabilities.mms),
            sms_url=found.sms_url,
            sms_method=found.sms_method,
            state=state,
            detail=detail,
        )

    if service is not None and number in pool and not service.use_inbound_webhook_on_number:
        if service.inbound_request_url == webhook and service.inbound_method in (None, "POST"):
            return seen(
                "ok",
                f"in messaging service {service.sid}, whose inbound URL "
                "is this configuration's webhook",
            )
        return seen(
            "service_overrides",
            f"in messaging service {service.sid}: its texts go to the "
            f"service's inbound URL ({service.inbound_request_url or 'none'}), "
            "not to the number's",
        )
    if not found.sms_url:
        return seen(
            "empty",
            "no webhook URL is set for incoming texts: Twilio drops them",
        )
    if found.sms_url != webhook:
        return seen(
            "points_elsewhere",
            f"incoming texts go to {found.sms_url}, not to {webhook}",
        )
    if found.sms_method not in (None, "POST"):
        return seen(
            "points_elsewhere",
            f"Twilio sends with {found.sms_method}; the bridge takes POST",
        )
    return seen("ok", "incoming texts come to this configuration")
