"""The grants ledger (SPEC §5): one grant per (campaign, rule, subject, period), ever — the
UNIQUE constraint says so, not the code; budgets spent under a per-campaign lock; every state
change goes to engage.grants.v1 through the outbox in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain import review
from services.rewards.domain.budget import GRANTED, REVOKED, allocate
from services.rewards.domain.decisions import DecisionKey, GrantDecision, distinct
from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.fulfilment import (
    FULFILLED,
    GRANT_EVENTS,
    OVERDUE,
    FulfilmentReport,
    GrantFulfilment,
    initial_fulfilment,
)
from services.rewards.domain.holdout import HELD_OUT, Holdout
from services.rewards.domain.review import EXCLUDED, HELD, VersionPeople
from shared.db import jsonb
from shared.ownership import TeamScope
from shared.records import GrantRecord

GRANTS = Counter(
    "engage_grants_total",
    "Grant state changes (new grants by status, then revocations), by campaign, rule, kind.",
    ["campaign", "rule", "kind", "status"],
)
GRANT_COLUMNS = (
    "grant_id, campaign_id, version, rule_id, role, user_id, period, status, items, fulfil_by, "
    "group_id, revocable, explanation, created_at, revoked_at, revoke_reason, fulfilment_status, "
    "fulfilment_reference, fulfilment_reason, fulfilment_at, reviewed_by, reviewed_at, "
    "review_reason"
)
_PUBLISHED = frozenset(GrantRecord.model_fields)  # the review columns stay in the ledger
# domain/fulfilment.py `fulfilment_view` in SQL (for filters and counts; :today = the local date).
FULFILMENT_VIEW_SQL = (
    f"(CASE WHEN status <> '{GRANTED}' THEN NULL "
    f"WHEN fulfilment_status <> '{FULFILLED}' AND fulfil_by < :today THEN '{OVERDUE}' "
    "ELSE fulfilment_status END)"
)
OVERDUE_SQL = f"status = '{GRANTED}' AND fulfilment_status <> '{FULFILLED}' AND fulfil_by < :today"


@dataclass(slots=True)
class Recorded:
    """What one call recorded; `count()` after the transaction committed."""

    rows: list[dict[str, Any]] = field(default_factory=list)

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
    hold: bool = False,
    holdout: Holdout | None = None,
) -> Recorded:
    """Record the decisions that are new (domain/decisions.py `distinct`, then what the ledger
    does not hold yet); spend budgets in decision order. With `hold` (a reviewed campaign's
    period end, domain/review.py) what would be granted is held — its budget reserved — and
    nothing is published. Users in the `holdout` are recorded `held_out`: no budget, never
    published (so never notified). Only flushes."""
    candidates = distinct(decisions)
    if not candidates:
        return Recorded()
    await lock_campaign_grants(session, campaign_id)
    held = await _recorded_keys(session, campaign_id, [d.key for d in candidates])
    new = [d for d in candidates if d.key not in held]
    if not new:
        return Recorded()
    remaining = await _remaining_budgets(session, campaign_id)
    # Held-out users (SPEC §12) are evaluated like anyone, then recorded apart: no budget.
    out = [holdout is not None and holdout.holds(d.user_id) for d in new]
    demands = [d.demand() for d, o in zip(new, out, strict=True) if not o]
    treated_statuses, spent = allocate(demands, remaining)
    if hold:
        treated_statuses = review.held(treated_statuses)
    each = iter(treated_statuses)
    statuses = [HELD_OUT if o else next(each) for o in out]
    recorded = Recorded(await _insert_grants(session, campaign_id, version, new, statuses))
    await _spend(session, campaign_id, {k: n for k, n in spent.items() if k in remaining})
    if not hold:
        told = [r for r in recorded.rows if r["status"] != HELD_OUT]
        await publish(session, told, "recorded", campaign_name)
    return recorded


async def _recorded_keys(
    session: AsyncSession, campaign_id: str, keys: Sequence[DecisionKey]
) -> set[DecisionKey]:
    """Which of these keys the ledger already holds a grant for."""
    rows = await session.execute(
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
    return {(r.rule_id, r.role, r.user_id, r.period) for r in rows}


async def _remaining_budgets(session: AsyncSession, campaign_id: str) -> dict[str, int]:
    """Units left per budgeted kind, locked until the transaction ends."""
    rows = await session.execute(
        text("SELECT kind, total - spent AS left FROM budgets WHERE campaign_id = :c FOR UPDATE"),
        {"c": campaign_id},
    )
    return {r.kind: int(r.left) for r in rows}


async def _insert_grants(
    session: AsyncSession,
    campaign_id: str,
    version: int,
    decisions: Sequence[GrantDecision],
    statuses: Sequence[str],
) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(f"""
        INSERT INTO grants (campaign_id, version, rule_id, role, user_id, period, status, items,
                            fulfil_by, group_id, revocable, explanation, fulfilment_status)
        SELECT :c, :v, * FROM unnest(CAST(:r AS text[]), CAST(:o AS text[]), CAST(:u AS text[]),
            CAST(:p AS text[]), CAST(:s AS text[]), CAST(:i AS jsonb[]), CAST(:f AS date[]),
            CAST(:g AS text[]), CAST(:rv AS boolean[]), CAST(:e AS jsonb[]),
            CAST(:fs AS text[]))
        RETURNING {GRANT_COLUMNS}"""),
        {
            "c": campaign_id,
            "v": version,
            "r": [d.rule_id for d in decisions],
            "o": [d.role for d in decisions],
            "u": [d.user_id for d in decisions],
            "p": [d.period for d in decisions],
            "s": list(statuses),
            "i": [_items_json(d) for d in decisions],
            "f": [d.fulfil_by for d in decisions],
            "g": [d.group_id for d in decisions],
            "rv": [d.revocable for d in decisions],
            "e": [orjson.dumps(d.explanation).decode() for d in decisions],
            "fs": [initial_fulfilment(s) for s in statuses],
        },
    )
    return [grant_document(dict(r._mapping)) for r in rows]


def _items_json(d: GrantDecision) -> str:
    return orjson.dumps([{"kind": k, "amount": a} for k, a in d.items]).decode()


async def _spend(session: AsyncSession, campaign_id: str, units: Mapping[str, int]) -> None:
    """Add `units` (budgeted kinds only) to what the campaign has spent."""
    if units:
        kinds = sorted(units)
        await session.execute(
            text(
                "UPDATE budgets b SET spent = b.spent + x.n FROM unnest(CAST(:k AS text[]), "
                "CAST(:n AS bigint[])) AS x(k, n) WHERE b.campaign_id = :c AND b.kind = x.k"
            ),
            {"c": campaign_id, "k": kinds, "n": [units[k] for k in kinds]},
        )


async def publish(
    session: AsyncSession, rows: Sequence[dict[str, Any]], event: str, campaign_name: str = ""
) -> None:
    """Queue grant state changes for engage.grants.v1 (key = the subject's user id; record:
    shared.records.GrantRecord): `recorded` (granted or budget_exhausted), `revoked`, and
    `fulfilled` or `fulfilment_failed`."""
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
                        {
                            "event": event,
                            "campaign_name": campaign_name,
                            **{k: v for k, v in r.items() if k in _PUBLISHED},
                        }
                    )
                    .model_dump_json(exclude_defaults=False)
                    .encode()
                    for r in rows
                ],
            },
        )


async def revoke_grant(
    session: AsyncSession, grant_id: int, reason: str, now: datetime
) -> dict[str, Any] | None:
    """Revoke one grant if it is granted and not fulfilled (a recorded state change), releasing
    its budget; None if it is not. Only flushes."""
    revoked = await _revoke(session, "grant_id = :id", {"id": grant_id}, reason, now)
    return revoked[0] if revoked else None


async def revoke_for_dissolved_groups(
    session: AsyncSession, dissolved: dict[str, datetime], now: datetime, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """Revocable grants of groups dissolved (local day) before their fulfilment date (SPEC §1,
    tribe chief). Only flushes."""
    ids = sorted(dissolved)
    if not ids:
        return []
    days = [dissolved[i].astimezone(tz).date() for i in ids]
    return await _revoke(
        session,
        "revocable AND EXISTS (SELECT 1 FROM unnest(CAST(:g AS text[]), CAST(:d AS date[])) "
        "AS x(g, d) WHERE x.g = grants.group_id AND x.d < grants.fulfil_by)",
        {"g": ids, "d": days},
        "group_dissolved",
        now,
    )


async def _revoke(
    session: AsyncSession, where: str, params: dict[str, Any], reason: str, now: datetime
) -> list[dict[str, Any]]:
    """Revoke granted grants matching `where` (this module's own conditions), releasing budget.
    A fulfilled grant is never revoked: its reward was credited (SPEC §11)."""
    rows = await session.execute(
        text(f"""
        UPDATE grants SET status = '{REVOKED}', revoked_at = :now, revoke_reason = :reason
        WHERE status = '{GRANTED}' AND fulfilment_status <> '{FULFILLED}' AND {where}
        RETURNING {GRANT_COLUMNS}"""),
        {**params, "now": now, "reason": reason},
    )
    revoked = [grant_document(dict(r._mapping)) for r in rows]
    await _release_budget(session, revoked)
    await publish(session, revoked, "revoked")
    return revoked


async def _release_budget(session: AsyncSession, grants: Sequence[dict[str, Any]]) -> None:
    """Give back to their campaigns' budgets what these grants had spent (or reserved)."""
    release: dict[tuple[str, str], int] = {}
    for r in grants:
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


# -- review hold (domain/review.py) ---------------------------------------------------------


async def period_versions(
    session: AsyncSession, campaign_id: str, period: str
) -> list[VersionPeople]:
    """Who wrote and submitted the versions a period's grants come from, and the live one."""
    rows = await session.execute(
        text(
            "SELECT v.version, v.author, v.submitted_by FROM campaign_versions v "
            "WHERE v.campaign_id = :c AND (v.version IN (SELECT DISTINCT g.version FROM grants g "
            "WHERE g.campaign_id = :c AND g.period = :p) OR v.version = (SELECT live_version "
            "FROM campaigns WHERE campaign_id = :c)) ORDER BY v.version"
        ),
        {"c": campaign_id, "p": period},
    )
    return [VersionPeople(r.version, r.author, r.submitted_by) for r in rows]


async def exclude_held(
    session: AsyncSession,
    campaign_id: str,
    period: str,
    excluded: Exclusions,
    reason: str,
    actor: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """The period's held grants of these users or groups become `excluded`: never published,
    their reserved budget released. Only flushes."""
    if not excluded:
        return []
    await lock_campaign_grants(session, campaign_id)
    rows = await session.execute(
        text(f"""
        UPDATE grants SET status = '{EXCLUDED}', reviewed_by = :by, reviewed_at = :now,
            review_reason = :reason
        WHERE campaign_id = :c AND period = :p AND status = '{HELD}'
            AND (user_id = ANY(:u) OR group_id = ANY(:g))
        RETURNING {GRANT_COLUMNS}"""),
        {
            "c": campaign_id,
            "p": period,
            "u": sorted(excluded.users),
            "g": sorted(excluded.groups),
            "by": actor,
            "now": now,
            "reason": reason,
        },
    )
    out = [grant_document(dict(r._mapping)) for r in rows]
    await _release_budget(session, out)
    return out


async def release_held(
    session: AsyncSession,
    campaign_id: str,
    period: str,
    actor: str,
    now: datetime,
    campaign_name: str = "",
) -> list[dict[str, Any]]:
    """The period's held grants become `granted` and are published, once: a second release
    finds none held. Only flushes."""
    await lock_campaign_grants(session, campaign_id)
    rows = await session.execute(
        text(f"""
        UPDATE grants SET status = '{GRANTED}', fulfilment_status = 'pending',
            reviewed_by = :by, reviewed_at = :now, review_reason = NULL
        WHERE campaign_id = :c AND period = :p AND status = '{HELD}'
        RETURNING {GRANT_COLUMNS}"""),
        {"c": campaign_id, "p": period, "by": actor, "now": now},
    )
    released = sorted((grant_document(dict(r._mapping)) for r in rows), key=lambda g: g["grant_id"])
    await publish(session, released, "recorded", campaign_name)
    return released


# A held grant's flags: its group's month and its user's days within the period (both from
# what scoring published, domain/flags.py), each with whose and which period they are.
_HELD_FLAGS = """
    SELECT coalesce(jsonb_agg(x.flag ORDER BY x.subject, x.at, x.flag->>'name'), '[]') AS flags
    FROM (
        SELECT 'group' AS subject, gm.month AS at,
            jsonb_build_object('subject', 'group', 'subject_id', gm.group_id,
                               'period', to_char(gm.month, 'YYYY-MM')) || f AS flag
        FROM group_month gm CROSS JOIN LATERAL jsonb_array_elements(gm.flags) AS f
        WHERE gm.group_id = g.group_id AND gm.month = :month
        UNION ALL
        SELECT 'user', ud.day,
            jsonb_build_object('subject', 'user', 'subject_id', ud.user_id,
                               'period', to_char(ud.day, 'YYYY-MM-DD')) || f
        FROM user_day ud CROSS JOIN LATERAL jsonb_array_elements(ud.flags) AS f
        WHERE ud.user_id = g.user_id AND ud.day BETWEEN :first AND :last
    ) x"""


async def held_page(
    session: AsyncSession,
    campaign_id: str,
    period: str,
    days: tuple[date, date],
    limit: int,
    after: tuple[int, int] | None,
) -> list[dict[str, Any]]:
    """A period's held grants with their flags: flagged first, then by id. `days`: the
    period's first and last day; the key is (0 flagged / 1 not, grant id)."""
    first, last = days
    rows = await session.execute(
        text(f"""
        SELECT * FROM (
            SELECT {GRANT_COLUMNS}, f.flags,
                CASE WHEN jsonb_array_length(f.flags) > 0 THEN 0 ELSE 1 END AS flag_rank
            FROM grants g CROSS JOIN LATERAL ({_HELD_FLAGS}) f
            WHERE g.campaign_id = :c AND g.period = :p AND g.status = '{HELD}'
        ) h
        WHERE CAST(:ar AS int) IS NULL OR (flag_rank, grant_id) > (:ar, :ag)
        ORDER BY flag_rank, grant_id LIMIT :n"""),
        {
            "c": campaign_id,
            "p": period,
            "month": first.replace(day=1),
            "first": first,
            "last": last,
            "ar": None if after is None else after[0],
            "ag": None if after is None else after[1],
            "n": limit,
        },
    )
    return [
        {**grant_document(dict(r._mapping)), "flags": jsonb(r.flags), "flag_rank": r.flag_rank}
        for r in rows
    ]


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


@dataclass(frozen=True, slots=True)
class GrantFilters:
    """What a list of grants is narrowed to; None = any. `fulfilment` is what a reader sees
    (domain/fulfilment.py `fulfilment_view`, on the local date `today`)."""

    campaign_id: str | None = None
    user_id: str | None = None
    rule_id: str | None = None
    period: str | None = None
    status: str | None = None
    fulfilment: str | None = None
    today: date | None = None


async def grants_page(
    session: AsyncSession, filters: GrantFilters, scope: TeamScope, limit: int, after: int | None
) -> list[dict[str, Any]]:
    """Grants matching the filters, of the campaigns `scope` shows (SPEC §15), by id."""
    columns = {k: v for k, v in asdict(filters).items() if k not in {"fulfilment", "today"}}
    given = {column: v for column, v in columns.items() if v is not None}
    conditions = [f"{column} = :{column}" for column in sorted(given)]
    if filters.fulfilment is not None:
        assert filters.today is not None, "the fulfilment a reader sees depends on the day"
        conditions.append(f"{FULFILMENT_VIEW_SQL} = :fulfilment")
        given |= {"fulfilment": filters.fulfilment, "today": filters.today}
    if not scope.every_team:  # a grant is its campaign's team's
        in_scope, params = scope.where("c.team")
        conditions.append(
            "EXISTS (SELECT 1 FROM campaigns c WHERE c.campaign_id = grants.campaign_id "
            f"AND {in_scope})"
        )
        given |= params
    where = " AND ".join(conditions) or "true"
    rows = await session.execute(
        text(
            f"SELECT {GRANT_COLUMNS} FROM grants WHERE {where} "
            "AND (CAST(:after AS bigint) IS NULL OR grant_id > :after) ORDER BY grant_id LIMIT :n"
        ),
        {**given, "after": after, "n": limit},
    )
    return [grant_document(dict(r._mapping)) for r in rows]


async def user_grants_page(
    session: AsyncSession, user_id: str, limit: int, before: int | None
) -> list[dict[str, Any]]:
    """A user's grants, newest first, each with its campaign's name (as of its version)."""
    rows = await session.execute(
        text(
            f"SELECT {GRANT_COLUMNS}, coalesce((SELECT v.definition->>'name' FROM "
            "campaign_versions v WHERE v.campaign_id = grants.campaign_id "
            "AND v.version = grants.version), '') AS campaign_name "
            "FROM grants WHERE user_id = :u "
            "AND (CAST(:before AS bigint) IS NULL OR grant_id < :before) "
            "ORDER BY grant_id DESC LIMIT :n"
        ),
        {"u": user_id, "before": before, "n": limit},
    )
    return [grant_document(dict(r._mapping)) for r in rows]


async def held_fulfilment(session: AsyncSession, grant_id: int) -> GrantFulfilment | None:
    """One grant's status and fulfilment, its row locked until the transaction ends."""
    row = (
        await session.execute(
            text(
                "SELECT status, fulfilment_status, fulfilment_reference FROM grants "
                "WHERE grant_id = :id FOR UPDATE"
            ),
            {"id": grant_id},
        )
    ).first()
    if row is None:
        return None
    return GrantFulfilment(row.status, row.fulfilment_status, row.fulfilment_reference)


async def record_fulfilment(
    session: AsyncSession, grant_id: int, report: FulfilmentReport
) -> dict[str, Any]:
    """Record a fulfilment report the domain accepted and publish it (`fulfilled` or
    `fulfilment_failed` on engage.grants.v1). Only flushes."""
    row = (
        await session.execute(
            text(f"""
            UPDATE grants SET fulfilment_status = :s, fulfilment_reference = :ref,
                fulfilment_reason = :reason, fulfilment_at = :at
            WHERE grant_id = :id
            RETURNING {GRANT_COLUMNS}"""),
            {
                "id": grant_id,
                "s": report.status,
                "ref": report.reference,
                "reason": report.reason,
                "at": report.at,
            },
        )
    ).one()
    grant = grant_document(dict(row._mapping))
    await publish(session, [grant], GRANT_EVENTS[report.status])
    return grant


async def overdue_by_campaign(session: AsyncSession, today: date) -> dict[str, int]:
    """Overdue grants (domain/fulfilment.py) per campaign, 0 for a campaign without any."""
    rows = await session.execute(
        text(
            "SELECT c.campaign_id, (SELECT count(*) FROM grants WHERE "
            f"grants.campaign_id = c.campaign_id AND {OVERDUE_SQL}) AS n FROM campaigns c"
        ),
        {"today": today},
    )
    return {r.campaign_id: int(r.n) for r in rows}


async def grant_by_id(session: AsyncSession, grant_id: int) -> dict[str, Any] | None:
    row = (
        await session.execute(
            text(f"SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = :id"), {"id": grant_id}
        )
    ).first()
    return None if row is None else grant_document(dict(row._mapping))
