"""Repository: SMS configurations, their numbers and their webhook tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from bridge.crypto import StoredSecrets
from bridge.db.pool import Connection, Record
from bridge.models import CHANNELS, ConfigId, NumberType, SendChannel, SmsNumber, TenantId, TrunkId

CredentialType = Literal["auth_token", "api_key"]

_CONFIG = (
    "id, tenant_id, trunk_id, name, account_sid, credential_type, api_key_sid, auth_token_last4, "
    "secrets_key_id, auth_token_sealed, api_key_secret_sealed, sender_id, messaging_service_sid, "
    "allowed_countries, enabled, auto_setup, created_at, updated_at"
)

_GET = f"SELECT {_CONFIG} FROM sms_configs WHERE tenant_id = $1 AND id = $2"

_GET_FOR_UPDATE = _GET + " FOR UPDATE"

_LIST_PAGE = f"""
SELECT {_CONFIG} FROM sms_configs WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""

_NUMBERS_OF = """
SELECT config_id, number, type, mms, mps, channels FROM sms_numbers
WHERE config_id = ANY ($1::text[]) ORDER BY config_id, position
"""

_TOKENS_OF = """
SELECT config_id, token, valid_until FROM webhook_tokens
WHERE config_id = ANY ($1::text[]) AND (valid_until IS NULL OR valid_until > now())
"""

_INSERT = """
INSERT INTO sms_configs (id, tenant_id, trunk_id, name, account_sid, credential_type,
    api_key_sid, auth_token_last4, secrets_key_id, auth_token_sealed, api_key_secret_sealed,
    sender_id, messaging_service_sid, allowed_countries, enabled, auto_setup)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
"""

_UPDATE = """
UPDATE sms_configs SET name = $2, account_sid = $3, credential_type = $4, api_key_sid = $5,
    auth_token_last4 = $6, secrets_key_id = $7, auth_token_sealed = $8,
    api_key_secret_sealed = $9, sender_id = $10, messaging_service_sid = $11,
    allowed_countries = $12, enabled = $13, auto_setup = $14, updated_at = now()
WHERE id = $1
"""

_DELETE_NUMBERS = "DELETE FROM sms_numbers WHERE config_id = $1"

_INSERT_NUMBER = """
INSERT INTO sms_numbers (number, config_id, tenant_id, position, type, mms, mps, channels)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

_NUMBERS_TAKEN = """
SELECT EXISTS (SELECT 1 FROM sms_numbers WHERE number = ANY ($1::text[])
               AND config_id IS DISTINCT FROM $2)
"""

_TENANT_NUMBERS = "SELECT number FROM sms_numbers WHERE tenant_id = $1"

_TRUNK_HAS_CONFIG = "SELECT EXISTS (SELECT 1 FROM sms_configs WHERE trunk_id = $1)"

_INSERT_WEBHOOK_TOKEN = "INSERT INTO webhook_tokens (token, config_id) VALUES ($1, $2)"

_RETIRE_WEBHOOK_TOKEN = """
UPDATE webhook_tokens SET valid_until = now() + make_interval(secs => $2)
WHERE config_id = $1 AND valid_until IS NULL
"""

_DELETE = "DELETE FROM sms_configs WHERE tenant_id = $1 AND id = $2"

_ALL_SEALED = """
SELECT id, secrets_key_id, auth_token_sealed, api_key_secret_sealed FROM sms_configs FOR UPDATE
"""

_RESEAL = """
UPDATE sms_configs SET secrets_key_id = $2, auth_token_sealed = $3, api_key_secret_sealed = $4
WHERE id = $1
"""

_WEBHOOK_CONFIG = """
SELECT c.id, c.tenant_id, c.trunk_id, c.enabled, c.account_sid, c.credential_type,
       c.api_key_sid, c.secrets_key_id, c.auth_token_sealed, c.api_key_secret_sealed,
       t.default_country, t.affinity_hours, t.rules_version, coalesce(s.enabled, false) AS sip
FROM sms_configs c JOIN tenants t ON t.id = c.tenant_id
LEFT JOIN sip_settings s ON s.tenant_id = c.tenant_id
"""

_WEBHOOK_CONFIG_BY_TOKEN = (
    _WEBHOOK_CONFIG
    + """JOIN webhook_tokens w ON w.config_id = c.id
WHERE w.token = $1 AND (w.valid_until IS NULL OR w.valid_until > now())
"""
)

_WEBHOOK_CONFIG_BY_NUMBER = (
    _WEBHOOK_CONFIG
    + """JOIN sms_numbers n ON n.config_id = c.id
WHERE n.number = $1 AND c.tenant_id = $2
"""
)

# What outbound routing reads of the configurations on some trunks: one statement, numbers
# folded in, for the send path.
_SENDING_CONFIGS = """
SELECT c.id, c.trunk_id, c.enabled, c.sender_id, c.messaging_service_sid, c.allowed_countries,
       coalesce((SELECT json_agg(json_build_object('number', n.number, 'type', n.type,
                                                   'mps', n.mps, 'channels', n.channels)
                                 ORDER BY n.position)
                 FROM sms_numbers n WHERE n.config_id = c.id), '[]') AS numbers,
       ARRAY(SELECT n.number FROM sms_numbers n
             WHERE n.config_id = c.id AND 'sms' = ANY (n.channels) ORDER BY n.position)
           AS sms_numbers,
       ARRAY(SELECT n.number FROM sms_numbers n
             WHERE n.config_id = c.id AND 'whatsapp' = ANY (n.channels)) AS whatsapp_numbers
FROM sms_configs c
"""

_SENDING_CONFIGS_OF_TRUNKS = (
    _SENDING_CONFIGS + "WHERE c.tenant_id = $1 AND c.trunk_id = ANY ($2::text[])"
)

_SENDING_CONFIG = _SENDING_CONFIGS + "WHERE c.tenant_id = $1 AND c.id = $2"


def stored_secrets(row: Record) -> StoredSecrets:
    """From a row that selected a configuration's three secret columns."""
    return StoredSecrets(
        row["secrets_key_id"], row["auth_token_sealed"], row["api_key_secret_sealed"]
    )


def credential_type(value: str) -> CredentialType:
    return "api_key" if value == "api_key" else "auth_token"


def _channels(values: Sequence[str]) -> list[SendChannel]:
    return [c for c in (CHANNELS.get(v) for v in values) if c == "sms" or c == "whatsapp"]


@dataclass(frozen=True)
class ConfigRow:
    """A configuration as stored, with its numbers and webhook tokens."""

    id: ConfigId
    tenant_id: TenantId
    trunk_id: TrunkId
    name: str
    account_sid: str
    credential_type: CredentialType
    api_key_sid: str | None
    auth_token_last4: str
    secrets: StoredSecrets
    sender_id: str | None
    messaging_service_sid: str | None
    allowed_countries: list[str]
    enabled: bool
    auto_setup: bool
    created_at: datetime
    updated_at: datetime
    numbers: list[SmsNumber]
    webhook_token: str
    previous_valid_until: datetime | None


@dataclass(frozen=True)
class ConfigValues:
    """What a create or update writes to the configuration row."""

    name: str
    account_sid: str
    credential_type: CredentialType
    api_key_sid: str | None
    auth_token_last4: str
    secrets: StoredSecrets
    sender_id: str | None
    messaging_service_sid: str | None
    allowed_countries: list[str]
    enabled: bool
    auto_setup: bool


@dataclass(frozen=True)
class SealedConfig:
    """A configuration's sealed secrets, for re-encryption under a new key."""

    id: ConfigId
    secrets: StoredSecrets


@dataclass(frozen=True)
class SendingNumber:
    number: str
    type: NumberType
    mps: float | None
    channels: frozenset[SendChannel] = frozenset({"sms"})


class LazyNumbers(Mapping[str, SendingNumber]):
    """A configuration's numbers as the statement gave them (JSON), each made into a
    SendingNumber when it is read: a send reads one of them, and a configuration may hold a
    thousand (making them all was a fifth of the time of every POST /messages on a
    configuration of 200 numbers, and still 7 % of a phone's send with 100)."""

    def __init__(self, raw: str) -> None:
        self._raw = raw
        self._parsed: dict[str, dict[str, Any]] | None = None
        self._made: dict[str, SendingNumber] = {}

    def _numbers(self) -> dict[str, dict[str, Any]]:
        if self._parsed is None:
            self._parsed = {n["number"]: n for n in json.loads(self._raw)}
        return self._parsed

    def __getitem__(self, number: str) -> SendingNumber:
        made = self._made.get(number)
        if made is None:
            n = self._numbers()[number]
            made = SendingNumber(
                n["number"], n["type"], n["mps"], frozenset(_channels(n["channels"]))
            )
            self._made[number] = made
        return made

    def __contains__(self, number: object) -> bool:
        return number in self._numbers()

    def __iter__(self) -> Iterator[str]:
        return iter(self._numbers())

    def __len__(self) -> int:
        return len(self._numbers())


@dataclass(frozen=True)
class SendingConfig:
    """The parts of a configuration that choosing a route and a sender reads: the numbers that
    send SMS (in the configuration's order) and WhatsApp, and each number's details."""

    id: ConfigId
    trunk_id: TrunkId
    enabled: bool
    sender_id: str | None
    messaging_service_sid: str | None
    allowed_countries: list[str]
    numbers: Mapping[str, SendingNumber]
    texting: tuple[str, ...]
    whatsapp: frozenset[str]


@dataclass(frozen=True)
class WebhookConfig:
    """What a webhook needs to know about the configuration its token names."""

    id: ConfigId
    tenant_id: TenantId
    trunk_id: TrunkId
    enabled: bool
    account_sid: str
    credential_type: CredentialType
    api_key_sid: str | None
    secrets: StoredSecrets
    default_country: str
    affinity_hours: int
    rules_version: int
    # The tenant takes texts on its phones (design §10): inbound texts are also MESSAGEs.
    sip: bool


async def _assemble(conn: Connection, rows: Sequence[Record]) -> list[ConfigRow]:
    ids = [r["id"] for r in rows]
    numbers: dict[str, list[SmsNumber]] = {i: [] for i in ids}
    for n in await conn.fetch(_NUMBERS_OF, ids):
        numbers[n["config_id"]].append(
            SmsNumber.model_construct(
                number=n["number"],
                type=n["type"],
                mms=n["mms"],
                mps=n["mps"],
                channels=_channels(n["channels"]),
            )
        )
    current: dict[str, str] = {}
    previous: dict[str, datetime] = {}
    for t in await conn.fetch(_TOKENS_OF, ids):
        if t["valid_until"] is None:
            current[t["config_id"]] = t["token"]
        else:
            until = previous.get(t["config_id"])
            previous[t["config_id"]] = (
                t["valid_until"] if until is None else max(until, t["valid_until"])
            )
    return [
        ConfigRow(
            id=ConfigId(r["id"]),
            tenant_id=TenantId(r["tenant_id"]),
            trunk_id=TrunkId(r["trunk_id"]),
            name=r["name"],
            account_sid=r["account_sid"],
            credential_type=credential_type(r["credential_type"]),
            api_key_sid=r["api_key_sid"],
            auth_token_last4=r["auth_token_last4"],
            secrets=stored_secrets(r),
            sender_id=r["sender_id"],
            messaging_service_sid=r["messaging_service_sid"],
            allowed_countries=list(r["allowed_countries"]),
            enabled=r["enabled"],
            auto_setup=r["auto_setup"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            numbers=numbers[r["id"]],
            webhook_token=current[r["id"]],
            previous_valid_until=previous.get(r["id"]),
        )
        for r in rows
    ]


async def get(conn: Connection, tenant_id: TenantId, config_id: ConfigId) -> ConfigRow | None:
    row = await conn.fetchrow(_GET, tenant_id, config_id)
    return None if row is None else (await _assemble(conn, [row]))[0]


async def get_for_update(
    conn: Connection, tenant_id: TenantId, config_id: ConfigId
) -> ConfigRow | None:
    row = await conn.fetchrow(_GET_FOR_UPDATE, tenant_id, config_id)
    return None if row is None else (await _assemble(conn, [row]))[0]


async def list_page(
    conn: Connection, tenant_id: TenantId, after: str, limit: int
) -> list[ConfigRow]:
    return await _assemble(conn, await conn.fetch(_LIST_PAGE, tenant_id, after, limit))


def _value_args(v: ConfigValues) -> tuple[object, ...]:
    return (
        v.name,
        v.account_sid,
        v.credential_type,
        v.api_key_sid,
        v.auth_token_last4,
        v.secrets.key_id,
        v.secrets.auth_token,
        v.secrets.api_key_secret,
        v.sender_id,
        v.messaging_service_sid,
        v.allowed_countries,
        v.enabled,
        v.auto_setup,
    )


async def insert(
    conn: Connection,
    config_id: ConfigId,
    tenant_id: TenantId,
    trunk_id: TrunkId,
    values: ConfigValues,
) -> None:
    await conn.execute(_INSERT, config_id, tenant_id, trunk_id, *_value_args(values))


async def update(conn: Connection, config_id: ConfigId, values: ConfigValues) -> None:
    await conn.execute(_UPDATE, config_id, *_value_args(values))


async def replace_numbers(
    conn: Connection, config_id: ConfigId, tenant_id: TenantId, numbers: list[SmsNumber]
) -> None:
    await conn.execute(_DELETE_NUMBERS, config_id)
    await conn.executemany(
        _INSERT_NUMBER,
        [
            (n.number, config_id, tenant_id, i, n.type, n.mms, n.mps, list(n.channels))
            for i, n in enumerate(numbers)
        ],
    )


async def numbers_taken(conn: Connection, numbers: list[str], config_id: ConfigId | None) -> bool:
    """Whether any of these numbers already belongs to another configuration, in any tenant."""
    taken: bool = await conn.fetchval(_NUMBERS_TAKEN, numbers, config_id)
    return taken


async def tenant_numbers(conn: Connection, tenant_id: TenantId) -> set[str]:
    return {r["number"] for r in await conn.fetch(_TENANT_NUMBERS, tenant_id)}


async def trunk_has_config(conn: Connection, trunk_id: TrunkId) -> bool:
    found: bool = await conn.fetchval(_TRUNK_HAS_CONFIG, trunk_id)
    return found


async def insert_webhook_token(conn: Connection, config_id: ConfigId, token: str) -> None:
    await conn.execute(_INSERT_WEBHOOK_TOKEN, token, config_id)


async def retire_webhook_token(conn: Connection, config_id: ConfigId, grace_seconds: float) -> None:
    await conn.execute(_RETIRE_WEBHOOK_TOKEN, config_id, grace_seconds)


async def delete(conn: Connection, tenant_id: TenantId, config_id: ConfigId) -> bool:
    return await conn.execute(_DELETE, tenant_id, config_id) == "DELETE 1"


async def all_sealed(conn: Connection) -> list[SealedConfig]:
    """Every configuration's sealed secrets, locked for the caller's transaction."""
    return [
        SealedConfig(ConfigId(r["id"]), stored_secrets(r)) for r in await conn.fetch(_ALL_SEALED)
    ]


async def reseal(conn: Connection, config_id: ConfigId, secrets: StoredSecrets) -> None:
    await conn.execute(
        _RESEAL, config_id, secrets.key_id, secrets.auth_token, secrets.api_key_secret
    )


def _webhook_config(row: Record) -> WebhookConfig:
    return WebhookConfig(
        id=ConfigId(row["id"]),
        tenant_id=TenantId(row["tenant_id"]),
        trunk_id=TrunkId(row["trunk_id"]),
        enabled=row["enabled"],
        account_sid=row["account_sid"],
        credential_type=credential_type(row["credential_type"]),
        api_key_sid=row["api_key_sid"],
        secrets=stored_secrets(row),
        default_country=row["default_country"],
        affinity_hours=row["affinity_hours"],
        rules_version=row["rules_version"],
        sip=row["sip"],
    )


async def webhook_config(conn: Connection, token: str) -> WebhookConfig | None:
    """The configuration of a current, or still-in-grace, webhook token."""
    row = await conn.fetchrow(_WEBHOOK_CONFIG_BY_TOKEN, token)
    return None if row is None else _webhook_config(row)


async def webhook_config_for_number(
    conn: Connection, tenant_id: TenantId, number: str
) -> WebhookConfig | None:
    """The tenant's configuration that owns ``number``."""
    row = await conn.fetchrow(_WEBHOOK_CONFIG_BY_NUMBER, number, tenant_id)
    return None if row is None else _webhook_config(row)


def _sending(r: Record) -> SendingConfig:
    return SendingConfig(
        id=ConfigId(r["id"]),
        trunk_id=TrunkId(r["trunk_id"]),
        enabled=r["enabled"],
        sender_id=r["sender_id"],
        messaging_service_sid=r["messaging_service_sid"],
        allowed_countries=list(r["allowed_countries"]),
        numbers=LazyNumbers(r["numbers"]),
        texting=tuple(r["sms_numbers"]),
        whatsapp=frozenset(r["whatsapp_numbers"]),
    )


async def sending_configs(
    conn: Connection, tenant_id: TenantId, trunk_ids: Sequence[str]
) -> dict[TrunkId, SendingConfig]:
    """The configurations carried by these trunks of the tenant, by trunk."""
    rows = await conn.fetch(_SENDING_CONFIGS_OF_TRUNKS, tenant_id, list(trunk_ids))
    return {TrunkId(r["trunk_id"]): _sending(r) for r in rows}


async def sending_config(
    conn: Connection, tenant_id: TenantId, config_id: ConfigId
) -> SendingConfig | None:
    row = await conn.fetchrow(_SENDING_CONFIG, tenant_id, config_id)
    return None if row is None else _sending(row)
