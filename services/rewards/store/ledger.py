"""The grants ledger (SPEC §5): one grant per (campaign, rule, subject, period), ever — the
UNIQUE constraint says so, not the code; budgets spent under a per-campaign lock; every state
change goes to engage.grants.v1 through the outbox in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.budget import GRANTED, REVOKED, allocate
from services.rewards.domain.settlement import GrantDecision
from shared.db import jsonb
from shared.records import GrantRecord

GRANTS = Counter(
    "engage_grants_total",
    "Grant state changes (new grants by status, then revocations), by campaign, rule, kind.",
    ["campaign", "rule", "kind", "status"],
)
GRANT_COLUMNS = (
    "grant_id, campaign_id, version, rule_id, role, user_id, period, status, items, fulfil_by, "
    "group_id, revocable, explanation, created_at, revoked_at, revoke_reason"
)


@dataclass(slots=True)
class Recorded:
    """What one call recorded; `count()` after the transaction committed."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    already: int = 0  # decisions whose grant existed before

    def count(self) -> None:
        for r in self.rows:
            for item in r["items"]:
                GRANTS.labels(r["campaign_id"], r["rule_id"], item["kind"], r["status"]).inc()


def grant_document(row: dict[str, Any]) -> dict[str, Any]:
    doc = dict(row)
    doc["items"] = jsonb(doc["items"])
    doc["explanation"] = jsonb(doc["explanation"])
    return doc


async def lock_campaign_grants(session: AsyncSession, campaign_id: str) -> None:
    """Serialise grant writing per campaign: budgets and the ledger stay exact under concurrency."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('rewards.grants'), hashtext(:c))"),
        {"c": campaign_id},
    )


async def record_grants(
    session: AsyncSession,
    campaign_id: str,
    version: int,
    decisions: Sequence[GrantDecision],
    campaign_name: str = "",
) -> Recorded:
    """Record the decisions that are new; spend budgets in decision order."""
    out = Recorded()
    unique: dict[tuple[str, str, str, str], GrantDecision] = {}
    for d in decisions:
        unique.setdefault(d.key, d)
    if not unique:
        return out
    await lock_campaign_grants(session, campaign_id)
    keys = list(unique)
    existing = await session.execute(
        text(
            "SELECT g.rule_id, g.role, g.user_id, g.period FROM grants g JOIN "
            "unnest(CAST(:r AS text[]), CAST(:o AS text[]), CAST(:u AS text[]), "
            "CAST(:p AS text[])) AS k(r, o, u, p) ON g.campaign_id = :c AND g.rule_id = k.r "
            "AND g.role = k.o AND g.user_id = k.u AND g.period = k.p"
        ),
        {
            "c": campaign_id,
            "r": [k[0] for k in keys],
            "o": [k[1] for k in keys],
            "u": [k[2] for k in keys],
            "p": [k[3] for k in keys],
        },
    )
    seen = {(r.rule_id, r.role, r.user_id, r.period) for r in existing}
    new = [unique[k] for k in keys if k not in seen]
    out.already = len(unique) - len(new)
    if not new:
        return out
    budget_rows = await session.execute(
        text("SELECT kind, total - spent AS left FROM budgets WHERE campaign_id = :c FOR UPDATE"),
        {"c": campaign_id},
    )
    remaining = {r.kind: int(r.left) for r in budget_rows}
    statuses, spent = allocate([d.demand() for d in new], remaining)
    rows = await session.execute(
        text(f"""
        INSERT INTO grants (campaign_id, version, rule_id, role, user_id, period, status, items,
                            fulfil_by, group_id, revocable, explanation)
        SELECT :c, :v, * FROM unnest(CAST(:r AS text[]), CAST(:o AS text[]), CAST(:u AS text[]),
            CAST(:p AS text[]), CAST(:s AS text[]), CAST(:i AS jsonb[]), CAST(:f AS date[]),
            CAST(:g AS text[]), CAST(:rv AS boolean[]), CAST(:e AS jsonb[]))
        RETURNING {GRANT_COLUMNS}"""),
        {
            "c": campaign_id,
            "v": version,
            "r": [d.rule_id for d in new],
            "o": [d.role for d in new],
            "u": [d.user_id for d in new],
            "p": [d.period for d in new],
            "s": statuses,
            "i": [
                orjson.dumps([{"kind": k, "amount": a} for k, a in d.items]).decode() for d in new
            ],
            "f": [d.fulfil_by for d in new],
            "g": [d.group_id for d in new],
            "rv": [d.revocable for d in new],
            "e": [orjson.dumps(d.explanation).decode() for d in new],
        },
    )
    out.rows = [grant_document(dict(r._mapping)) for r in rows]
    if spent:
        kinds = sorted(k for k in spent if k in remaining)
        await session.execute(
            text(
                "UPDATE budgets b SET spent = b.spent + x.n FROM unnest(CAST(:k AS text[]), "
                "CAST(:n AS bigint[])) AS x(k, n) WHERE b.campaign_id = :c AND b.kind = x.k"
            ),
            {"c": campaign_id, "k": kinds, "n": [spent[k] for k in kinds]},
        )
    await publish(session, out.rows, "recorded", campaign_name)
    return out


async def publish(
    session: AsyncSession, rows: Sequence[dict[str, Any]], event: str, campaign_name: str = ""
) -> None:
    """Queue grant state changes for engage.grants.v1 (key = the subject's user id; record:
    shared.records.GrantRecord): `recorded` (granted or budget_exhausted) and `revoked`."""
    if rows:
        await session.execute(
            text(
                "INSERT INTO grants_outbox (key, value) "
                "SELECT * FROM unnest(CAST(:k AS text[]), CAST(:v AS bytea[]))"
            ),
            {
                "k": [r["user_id"] for r in rows],
                "v": [
                    GrantRecord.model_validate(
                        {"event": event, "campaign_name": campaign_name, **r}
                    )
                    .model_dump_json(exclude_defaults=False)
                    .encode()
                    for r in rows
                ],
            },
        )


async def revoke(
    session: AsyncSession, where: str, params: dict[str, Any], reason: str, now: datetime
) -> list[dict[str, Any]]:
    """Revoke granted grants matching `where` (a recorded state change), releasing budget."""
    rows = await session.execute(
        text(f"""
        UPDATE grants SET status = '{REVOKED}', revoked_at = :now, revoke_reason = :reason
        WHERE status = '{GRANTED}' AND {where}
        RETURNING {GRANT_COLUMNS}"""),
        {**params, "now": now, "reason": reason},
    )
    revoked = [grant_document(dict(r._mapping)) for r in rows]
    release: dict[tuple[str, str], int] = {}
    for r in revoked:
        for item in r["items"]:
            key = (r["campaign_id"], item["kind"])
            release[key] = release.get(key, 0) + int(item["amount"])
    if release:
        ks = sorted(release)
        await session.execute(
            text(
                "UPDATE budgets b SET spent = b.spent - x.n FROM unnest(CAST(:c AS text[]), "
                "CAST(:k AS text[]), CAST(:n AS bigint[])) AS x(c, k, n) "
                "WHERE b.campaign_id = x.c AND b.kind = x.k"
            ),
            {"c": [k[0] for k in ks], "k": [k[1] for k in ks], "n": [release[k] for k in ks]},
        )
    await publish(session, revoked, "revoked")
    return revoked


async def revoke_for_dissolved_groups(
    session: AsyncSession, dissolved: dict[str, datetime], now: datetime, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """Revocable grants of groups dissolved (local day) before their fulfilment date (SPEC §1,
    tribe chief)."""
    ids = sorted(dissolved)
    if not ids:
        return []
    days = [dissolved[i].astimezone(tz).date() for i in ids]
    return await revoke(
        session,
        "revocable AND EXISTS (SELECT 1 FROM unnest(CAST(:g AS text[]), CAST(:d AS date[])) "
        "AS x(g, d) WHERE x.g = grants.group_id AND x.d < grants.fulfil_by)",
        {"g": ids, "d": days},
        "group_dissolved",
        now,
    )


async def dissolutions(session: AsyncSession, group_ids: Iterable[str]) -> dict[str, datetime]:
    """When each of these groups was dissolved, from any month's stored values."""
    rows = await session.execute(
        text(
            "SELECT group_id, min(dissolved_at) AS at FROM group_month "
            "WHERE group_id = ANY(:g) AND dissolved_at IS NOT NULL GROUP BY group_id"
        ),
        {"g": sorted(set(group_ids))},
    )
    return {r.group_id: r.at for r in rows}


async def grants_page(
    session: AsyncSession, filters: dict[str, Any], limit: int, after: int | None
) -> list[dict[str, Any]]:
    """Grants matching the filters (campaign_id, user_id, rule_id, period, status), by id."""
    where = " AND ".join(f"{k} = :{k}" for k in sorted(filters)) or "true"
    rows = await session.execute(
        text(
            f"SELECT {GRANT_COLUMNS} FROM grants WHERE {where} "
            "AND (CAST(:after AS bigint) IS NULL OR grant_id > :after) ORDER BY grant_id LIMIT :n"
        ),
        {**filters, "after": after, "n": limit},
    )
    return [grant_document(dict(r._mapping)) for r in rows]


async def grant_by_id(session: AsyncSession, grant_id: int) -> dict[str, Any] | None:
    rows = await grants_page(session, {"grant_id": grant_id}, 1, None)
    return rows[0] if rows else None
