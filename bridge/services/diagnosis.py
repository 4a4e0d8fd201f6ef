"""Service: one call that says why texts don't arrive or don't go out (design §11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.db import diagnostics as repo
from bridge.db import sms_configs as configs_repo
from bridge.db import tenants as tenants_repo
from bridge.db.pool import Connection, Database
from bridge.db.sms_configs import ConfigRow
from bridge.errors import NotFound
from bridge.ids import id_floor
from bridge.models import (
    ChannelDiagnosis,
    ConfigId,
    DeliveryDiagnosis,
    Diagnosis,
    FailureCount,
    InboundCounts,
    InboundDiagnosis,
    OutboundDiagnosis,
    SignatureFailureView,
    TenantDiagnosis,
    TenantId,
    TwilioSetup,
)
from bridge.models.twilio_codes import describe

# A text waiting longer than this to be sent, or to reach the PBX, is worth a sentence.
SLOW_SECONDS = 300.0


def _count(n: int, thing: str, things: str | None = None) -> str:
    return f"{n} {thing if n == 1 else (things or thing + 's')}"


def _when(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class DiagnosisService:
    """Reads what the bridge already keeps; asks Twilio only when told to (the caller passes
    Twilio's view in)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def config(
        self, tenant_id: TenantId, config_id: ConfigId, twilio: TwilioSetup | None = None
    ) -> Diagnosis:
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            row = await configs_repo.get(conn, tenant_id, config_id)
            if row is None:
                raise NotFound("SMS configuration not found")
            tenant = await repo.tenant_setup(conn, tenant_id)
            inbound, outbound = await self._config_facts(conn, row)
            delivery = await self._delivery(conn, tenant_id, tenant)
        problems = _twilio_problems(twilio) + _config_problems(row, inbound, outbound)
        problems += _delivery_problems(delivery, tenant)
        return Diagnosis(
            config_id=row.id,
            inbound=inbound,
            outbound=outbound,
            delivery=delivery,
            twilio=twilio,
            problems=problems,
        )

    async def tenant(
        self, tenant_id: TenantId, twilio: list[TwilioSetup] | None = None
    ) -> TenantDiagnosis:
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            rows = await configs_repo.list_page(conn, tenant_id, "", 1000)
            tenant = await repo.tenant_setup(conn, tenant_id)
            facts = [(row, *await self._config_facts(conn, row)) for row in rows]
            delivery = await self._delivery(conn, tenant_id, tenant)
        problems: list[str] = []
        for setup in twilio or []:
            problems += _twilio_problems(setup)
        for row, inbound, outbound in facts:
            problems += [f"{row.name}: {p}" for p in _config_problems(row, inbound, outbound)]
        problems += _delivery_problems(delivery, tenant)
        if not tenant.has_inbound_rule:
            problems.append(
                "The tenant has no enabled inbound rule: a text from someone no extension has "
                "texted is stored as unroutable. Add one (a '*' rule catches everything)."
            )
        if not rows:
            problems.append("The tenant has no SMS configuration yet.")
        return TenantDiagnosis(
            tenant_id=tenant_id,
            config_ids=[row.id for row in rows],
            inbound=_sum_inbound([i for _, i, _ in facts]),
            outbound=_sum_outbound([o for _, _, o in facts]),
            delivery=delivery,
            twilio=twilio,
            problems=problems,
        )

    async def _config_facts(
        self, conn: Connection, row: ConfigRow
    ) -> tuple[InboundDiagnosis, OutboundDiagnosis]:
        now = datetime.now(UTC)
        day_id = id_floor("msg", now - timedelta(days=1))
        facts = await repo.inbound(
            conn,
            row.tenant_id,
            row.id,
            [n.number for n in row.numbers],
            day_id=day_id,
            month_id=id_floor("msg", now - timedelta(days=30)),
        )
        failures = await repo.signature_failures(conn, row.id)
        queue = await repo.queued(conn, row.id)
        failed = await repo.failed(conn, row.tenant_id, row.id, day_id)
        inbound = InboundDiagnosis(
            last_webhook_at=facts.last_at,
            last_24h=InboundCounts(
                accepted=facts.accepted,
                duplicate=facts.refused.get("duplicate", 0),
                bad_signature=facts.refused.get("bad_signature", 0),
                unknown_number=facts.unknown_number,
                refused=facts.refused.get("refused", 0),
            ),
            signature_failures=[
                SignatureFailureView(at=f.at, cause=f.cause, detail=f.detail) for f in failures
            ],
            unroutable_last_24h=facts.unroutable,
        )
        outbound = OutboundDiagnosis(
            queued=queue.waiting,
            oldest_queued_seconds=queue.oldest_seconds,
            failed_last_24h=[_failure(code, count, text) for code, count, text in failed],
        )
        return inbound, outbound

    async def _delivery(
        self, conn: Connection, tenant_id: TenantId, tenant: repo.TenantFacts
    ) -> DeliveryDiagnosis:
        webhook = await repo.webhook_channel(conn, tenant_id)
        sip = await repo.sip_channel(conn, tenant_id)
        return DeliveryDiagnosis(
            webhook=_channel(webhook, tenant.has_webhook), sip=_channel(sip, tenant.has_sip)
        )


def _channel(facts: repo.ChannelFacts, configured: bool) -> ChannelDiagnosis:
    return ChannelDiagnosis(
        configured=configured,
        pending=facts.pending,
        oldest_pending_seconds=facts.oldest_seconds,
        dead_last_24h=facts.dead_last_24h,
        last_error=facts.last_error,
    )


def _failure(code: int | None, count: int, text: str | None) -> FailureCount:
    described = describe(code)
    if described is None:
        return FailureCount(
            code=None, count=count, meaning=text or "failed", advice="see the message's history"
        )
    return FailureCount(code=code, count=count, meaning=described.meaning, advice=described.advice)


def _twilio_problems(setup: TwilioSetup | None) -> list[str]:
    if setup is None:
        return []
    return [
        f"{n.number}: {n.detail}. Point it at {setup.webhook_url} "
        f"(POST …/sms-configs/{setup.config_id}/twilio-setup does it)."
        for n in setup.numbers
        if n.state != "ok"
    ]


def _config_problems(
    row: ConfigRow, inbound: InboundDiagnosis, outbound: OutboundDiagnosis
) -> list[str]:
    problems = []
    causes: dict[str, SignatureFailureView] = {}
    for failure in inbound.signature_failures:
        causes.setdefault(failure.cause, failure)
    counts = inbound.last_24h
    for cause, failure in causes.items():
        if cause == "wrong_auth_token":
            problems.append(
                f"{_count(counts.bad_signature, 'webhook')} in the last 24 h failed Twilio's "
                "signature check with every variant of the URL: the auth token was changed in "
                "Twilio, or this configuration's auth token is not the account's. Update the "
                "credential."
            )
        else:
            problems.append(
                f"{_count(counts.bad_signature, 'webhook')} in the last 24 h failed Twilio's "
                f"signature check ({cause.replace('_', ' ')}): {failure.detail}. Set "
                "BRIDGE_PUBLIC_BASE_URL to the URL Twilio uses, or fix the proxy in front."
            )
    if not row.enabled:
        problems.append("The configuration is disabled: texts are stored, not delivered.")
    if inbound.last_webhook_at is None and row.numbers:
        problems.append(
            "No text has come in through this configuration in the last 30 days: check where "
            "its numbers send their texts (GET …/twilio-setup)."
        )
    if counts.unknown_number:
        problems.append(
            f"{_count(counts.unknown_number, 'text')} in the last 24 h went to numbers that are "
            "not this configuration's: add them to its numbers."
        )
    if inbound.unroutable_last_24h:
        problems.append(
            f"{_count(inbound.unroutable_last_24h, 'text')} in the last 24 h matched no inbound "
            "rule and no conversation, and reached no extension."
        )
    oldest = outbound.oldest_queued_seconds
    if outbound.queued and oldest is not None and oldest > SLOW_SECONDS:
        problems.append(
            f"{_count(outbound.queued, 'text')} waiting to be sent, the oldest for "
            f"{_when(oldest)}: Twilio may be unreachable, or a sender is paced slower than it "
            "is used."
        )
    for failed in outbound.failed_last_24h:
        code = f" ({failed.code})" if failed.code is not None else ""
        problems.append(
            f"{_count(failed.count, 'text')} failed in the last 24 h: {failed.meaning}{code}. "
            f"{failed.advice[:1].upper()}{failed.advice[1:]}."
        )
    return problems


def _delivery_problems(delivery: DeliveryDiagnosis, tenant: repo.TenantFacts) -> list[str]:
    problems = []
    if not tenant.has_webhook and not tenant.has_sip:
        problems.append(
            "Texts reach no phone and no PBX: the tenant has no delivery target and no SIP. "
            "Set one (PUT …/delivery or PUT …/sip)."
        )
    for name, channel in (("the PBX webhook", delivery.webhook), ("SIP", delivery.sip)):
        if channel.dead_last_24h:
            problems.append(
                f"{_count(channel.dead_last_24h, 'delivery', 'deliveries')} by {name} given up "
                "in the last 24 h"
                + (f" (last error: {channel.last_error})" if channel.last_error else "")
                + "."
            )
        oldest = channel.oldest_pending_seconds
        if channel.pending and oldest is not None and oldest > SLOW_SECONDS:
            problems.append(
                f"{_count(channel.pending, 'text')} waiting for delivery by {name}, the oldest for "
                f"{_when(oldest)}"
                + (f" (last error: {channel.last_error})" if channel.last_error else "")
                + "."
            )
    return problems


def _sum_inbound(items: list[InboundDiagnosis]) -> InboundDiagnosis:
    last = [i.last_webhook_at for i in items if i.last_webhook_at is not None]
    return InboundDiagnosis(
        last_webhook_at=max(last) if last else None,
        last_24h=InboundCounts(
            accepted=sum(i.last_24h.accepted for i in items),
            duplicate=sum(i.last_24h.duplicate for i in items),
            bad_signature=sum(i.last_24h.bad_signature for i in items),
            unknown_number=sum(i.last_24h.unknown_number for i in items),
            refused=sum(i.last_24h.refused for i in items),
        ),
        signature_failures=sorted(
            (f for i in items for f in i.signature_failures), key=lambda f: f.at, reverse=True
        )[:10],
        unroutable_last_24h=sum(i.unroutable_last_24h for i in items),
    )


def _sum_outbound(items: list[OutboundDiagnosis]) -> OutboundDiagnosis:
    oldest = [o.oldest_queued_seconds for o in items if o.oldest_queued_seconds is not None]
    counts: dict[int | None, FailureCount] = {}
    for item in items:
        for f in item.failed_last_24h:
            seen = counts.get(f.code)
            counts[f.code] = (
                f if seen is None else seen.model_copy(update={"count": seen.count + f.count})
            )
    return OutboundDiagnosis(
        queued=sum(o.queued for o in items),
        oldest_queued_seconds=max(oldest) if oldest else None,
        failed_last_24h=sorted(counts.values(), key=lambda f: f.count, reverse=True),
    )
