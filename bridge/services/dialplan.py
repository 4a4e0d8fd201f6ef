"""Service: a tenant's extensions and its inbound and outbound rules, checked as a whole."""

from __future__ import annotations

from bridge.db import dialplan as repo
from bridge.db import sms_configs as configs_repo
from bridge.db import tenants as tenants_repo
from bridge.db.pool import Database
from bridge.errors import FieldProblem, InUse, InvalidInput
from bridge.models import Extension, InboundRule, OutboundRule, Page, TenantId


def _invalid(problems: list[FieldProblem]) -> InvalidInput:
    return InvalidInput(
        "; ".join(f"{p.field}: {p.message}" for p in problems), details=tuple(problems)
    )


class DialplanService:
    """Replace-all lists whose every reference must resolve inside the tenant."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_extensions(self, tenant_id: TenantId) -> Page[Extension]:
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            return Page(items=await repo.get_extensions(conn, tenant_id))

    async def put_extensions(
        self, tenant_id: TenantId, extensions: list[Extension]
    ) -> Page[Extension]:
        async with self._db.transaction() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            numbers = await configs_repo.tenant_numbers(conn, tenant_id)
            problems: list[FieldProblem] = []
            seen: set[str] = set()
            for i, ext in enumerate(extensions):
                if ext.extension in seen:
                    problems.append(FieldProblem(f"[{i}].extension", "is listed twice"))
                seen.add(ext.extension)
                for j, did in enumerate(ext.dids):
                    if did not in numbers:
                        problems.append(
                            FieldProblem(
                                f"[{i}].dids[{j}]",
                                "is not a number of any of this tenant's SMS configurations",
                            )
                        )
            if problems:
                raise _invalid(problems)
            missing = await repo.extensions_used_by_rules(conn, tenant_id) - seen
            if missing:
                raise InUse(
                    f"extension {sorted(missing)[0]} is named by an inbound rule; "
                    "change the rules first"
                )
            await repo.replace_extensions(conn, tenant_id, extensions)
            return Page(items=await repo.get_extensions(conn, tenant_id))

    async def get_inbound_rules(self, tenant_id: TenantId) -> Page[InboundRule]:
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            return Page(items=await repo.get_inbound_rules(conn, tenant_id))

    async def put_inbound_rules(
        self, tenant_id: TenantId, rules: list[InboundRule]
    ) -> Page[InboundRule]:
        async with self._db.transaction() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            trunks = await tenants_repo.trunk_ids(conn, tenant_id)
            extensions = await repo.extension_names(conn, tenant_id)
            problems: list[FieldProblem] = []
            for i, rule in enumerate(rules):
                if rule.trunk_id is not None and rule.trunk_id not in trunks:
                    problems.append(FieldProblem(f"[{i}].trunk_id", "no such trunk in this tenant"))
                problems.extend(
                    FieldProblem(f"[{i}].extensions[{j}]", "no such extension in this tenant")
                    for j, ext in enumerate(rule.extensions)
                    if ext not in extensions
                )
            if problems:
                raise _invalid(problems)
            await repo.replace_inbound_rules(conn, tenant_id, rules)
            return Page(items=await repo.get_inbound_rules(conn, tenant_id))

    async def get_outbound_rules(self, tenant_id: TenantId) -> Page[OutboundRule]:
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            return Page(items=await repo.get_outbound_rules(conn, tenant_id))

    async def put_outbound_rules(
        self, tenant_id: TenantId, rules: list[OutboundRule]
    ) -> Page[OutboundRule]:
        async with self._db.transaction() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            trunks = await tenants_repo.trunk_ids(conn, tenant_id)
            numbers = await configs_repo.tenant_numbers(conn, tenant_id)
            problems: list[FieldProblem] = []
            for i, rule in enumerate(rules):
                problems.extend(
                    FieldProblem(f"[{i}].trunks[{j}]", "no such trunk in this tenant")
                    for j, trunk in enumerate(rule.trunks)
                    if trunk not in trunks
                )
                if rule.sender and rule.sender.startswith("+") and rule.sender not in numbers:
                    problems.append(
                        FieldProblem(
                            f"[{i}].sender",
                            "is not a number of any of this tenant's SMS configurations",
                        )
                    )
            if problems:
                raise _invalid(problems)
            await repo.replace_outbound_rules(conn, tenant_id, rules)
            return Page(items=await repo.get_outbound_rules(conn, tenant_id))
