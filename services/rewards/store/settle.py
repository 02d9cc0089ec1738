"""Settlements as stored (SPEC §5, §16): settled periods with their figures, periods whose
settlement failed with the reason and the next attempt, and what the gauges show. Only
flushes: usecases/settlement.py decides and owns the transactions.

Rule and period '*' (`UNLISTED`) stand for a campaign whose periods could not be listed at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.after_settlement import SubjectChange
from services.rewards.domain.lifecycle import ACTIVE, ENDED
from services.rewards.domain.retry import PendingRetry
from services.rewards.domain.review import HELD
from shared.db import jsonb

UNLISTED = "*"  # rule and period of a failure to list a campaign's periods at all
SettlementKey = tuple[str, str, str]  # campaign id, rule id, period label


@dataclass(frozen=True, slots=True)
class Failed:
    """A settlement that failed and when it is tried again."""

    campaign_id: str
    rule_id: str
    period: str
    version: int
    reason: str
    attempts: int
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class BudgetLevel:
    campaign_id: str
    kind: str
    total: int
    left: int


async def settled_keys(session: AsyncSession) -> set[SettlementKey]:
    rows = await session.execute(text("SELECT campaign_id, rule_id, period FROM settlements"))
    return {(r.campaign_id, r.rule_id, r.period) for r in rows}


async def pending_retries(session: AsyncSession) -> dict[SettlementKey, PendingRetry]:
    """Every failed settlement, sorted: replicas drop stale rows, and lock them, in one order."""
    rows = await session.execute(
        text(
            "SELECT campaign_id, rule_id, period, version, next_attempt_at "
            "FROM settlement_failures ORDER BY campaign_id, rule_id, period"
        )
    )
    return {
        (r.campaign_id, r.rule_id, r.period): PendingRetry(r.version, r.next_attempt_at)
        for r in rows
    }


async def add_failure(
    session: AsyncSession, key: SettlementKey, version: int, reason: str, now: datetime
) -> int:
    """One more failed attempt at `key`; how many in a row now."""
    attempts: int = (
        await session.execute(
            text(
                "INSERT INTO settlement_failures AS f (campaign_id, rule_id, period, version, "
                "reason, attempts, first_failed_at, last_failed_at, next_attempt_at) "
                "VALUES (:c, :r, :p, :v, :reason, 1, :now, :now, :now) "
                "ON CONFLICT (campaign_id, rule_id, period) DO UPDATE SET "
                "version = EXCLUDED.version, reason = EXCLUDED.reason, "
                "attempts = f.attempts + 1, last_failed_at = EXCLUDED.last_failed_at "
                "RETURNING attempts"
            ),
            {**_params(key), "v": version, "reason": reason, "now": now},
        )
    ).scalar_one()
    return attempts


async def schedule_retry(session: AsyncSession, key: SettlementKey, at: datetime) -> None:
    await session.execute(
        text(
            "UPDATE settlement_failures SET next_attempt_at = :t "
            "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
        ),
        {**_params(key), "t": at},
    )


async def forget_failure(session: AsyncSession, key: SettlementKey) -> None:
    await session.execute(
        text(
            "DELETE FROM settlement_failures "
            "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
        ),
        _params(key),
    )


async def claim(session: AsyncSession, key: SettlementKey, version: int) -> bool:
    """Insert the settlement row; False if another replica has (or is inserting) it.

    A second replica's insert waits on the primary key until the first commits, then finds the
    row; if the first dies, its transaction rolls back and the second's insert goes through.
    """
    claimed = (
        await session.execute(
            text(
                "INSERT INTO settlements (campaign_id, rule_id, period, version) "
                "VALUES (:c, :r, :p, :v) ON CONFLICT DO NOTHING RETURNING 1"
            ),
            {**_params(key), "v": version},
        )
    ).first()
    return claimed is not None


async def record_settled(
    session: AsyncSession, key: SettlementKey, seconds: float, grants: int, now: datetime
) -> None:
    """The figures of a claimed settlement."""
    await session.execute(
        text(
            "UPDATE settlements SET seconds = :s, grants = :n, settled_at = :now "
            "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
        ),
        {**_params(key), "s": seconds, "n": grants, "now": now},
    )


def _params(key: SettlementKey) -> dict[str, str]:
    return {"c": key[0], "r": key[1], "p": key[2]}


async def budget_levels(session: AsyncSession) -> list[BudgetLevel]:
    rows = await session.execute(
        text("SELECT campaign_id, kind, total, total - spent AS left FROM budgets")
    )
    return [BudgetLevel(r.campaign_id, r.kind, r.total, r.left) for r in rows]


async def failing_count(session: AsyncSession) -> int:
    """Failed settlements of active or ended campaigns: a paused campaign is not retried (it
    settles nothing), so pausing it stops the alert while a fixed version is prepared."""
    failing = await session.scalar(
        text(
            "SELECT count(*) FROM settlement_failures f JOIN campaigns c USING (campaign_id) "
            "WHERE c.state IN (:active, :ended)"
        ),
        {"active": ACTIVE, "ended": ENDED},
    )
    return int(failing or 0)


# A settled period's changes since (domain/after_settlement.py): the subjects that differ from
# what it settled on, and the largest move of a metric the rule reads.
_CHANGED = "(x.new_subject OR x.max_abs_delta > 0)"
_CHANGES = f"""
    SELECT count(*) FILTER (WHERE {_CHANGED}) AS changed_subjects,
        coalesce(max(x.max_abs_delta) FILTER (WHERE {_CHANGED}), 0) AS max_abs_delta,
        max(x.last_changed_at) FILTER (WHERE {_CHANGED}) AS last_changed_at
    FROM settlement_changes x
    WHERE x.campaign_id = s.campaign_id AND x.rule_id = s.rule_id AND x.period = s.period"""


async def settlements_page(
    session: AsyncSession, campaign_id: str, limit: int, after: str | None
) -> list[dict[str, Any]]:
    """Settled and failing periods of a campaign, by rule and period; a settled one with its
    grants held for review and what changed in its inputs since it settled."""
    rows = await session.execute(
        text(
            "SELECT * FROM ("
            "SELECT s.campaign_id, s.rule_id, s.period, s.version, 'settled' AS status, "
            "s.settled_at, s.seconds, s.grants, NULL AS reason, NULL::int AS attempts, "
            "NULL::timestamptz AS first_failed_at, NULL::timestamptz AS last_failed_at, "
            "NULL::timestamptz AS next_attempt_at, "
            f"(SELECT count(*) FROM grants g WHERE g.campaign_id = s.campaign_id "
            f"AND g.rule_id = s.rule_id AND g.period = s.period AND g.status = '{HELD}') AS held, "
            "ch.changed_subjects > 0 AS changed_after_settlement, ch.changed_subjects, "
            "ch.max_abs_delta, ch.last_changed_at "
            f"FROM settlements s CROSS JOIN LATERAL ({_CHANGES}) ch WHERE s.campaign_id = :c "
            "UNION ALL "
            "SELECT campaign_id, rule_id, period, version, 'failed', NULL, NULL, NULL, reason, "
            "attempts, first_failed_at, last_failed_at, next_attempt_at, NULL, NULL, NULL, "
            "NULL, NULL FROM settlement_failures WHERE campaign_id = :c"
            ") s WHERE (CAST(:after AS text) IS NULL OR rule_id || '/' || period > :after) "
            "ORDER BY rule_id || '/' || period LIMIT :n"
        ),
        {"c": campaign_id, "after": after, "n": limit},
    )
    return [dict(r._mapping) for r in rows]


async def settled_among(session: AsyncSession, labels: Iterable[str]) -> set[SettlementKey]:
    """The settled (campaign, rule, period) whose period is one of `labels`."""
    wanted = sorted(set(labels))
    if not wanted:
        return set()
    rows = await session.execute(
        text("SELECT campaign_id, rule_id, period FROM settlements WHERE period = ANY(:p)"),
        {"p": wanted},
    )
    return {(r.campaign_id, r.rule_id, r.period) for r in rows}


async def settled_values_of(
    session: AsyncSession, key: SettlementKey, subjects: Iterable[str]
) -> dict[str, tuple[dict[str, float], bool]]:
    """Subjects of a settled period that changed before: their values at settlement, and
    whether they were new to it."""
    rows = await session.execute(
        text(
            "SELECT subject_id, settled_values, new_subject FROM settlement_changes "
            "WHERE campaign_id = :c AND rule_id = :r AND period = :p AND subject_id = ANY(:s)"
        ),
        {**_params(key), "s": sorted(set(subjects))},
    )
    return {
        r.subject_id: ({k: float(v) for k, v in jsonb(r.settled_values).items()}, r.new_subject)
        for r in rows
    }


async def record_changes(
    session: AsyncSession, key: SettlementKey, changes: Sequence[SubjectChange], now: datetime
) -> None:
    """Upsert how each subject differs from the period's settlement now."""
    if not changes:
        return
    ordered = sorted(changes, key=lambda c: c.subject_id)
    await session.execute(
        text(
            "INSERT INTO settlement_changes AS x (campaign_id, rule_id, period, subject_id, "
            "settled_values, new_subject, max_abs_delta, first_changed_at, last_changed_at) "
            "SELECT :c, :r, :p, s, v, n, d, :now, :now FROM unnest(CAST(:s AS text[]), "
            "CAST(:v AS jsonb[]), CAST(:n AS boolean[]), CAST(:d AS float8[])) AS k(s, v, n, d) "
            "ON CONFLICT (campaign_id, rule_id, period, subject_id) DO UPDATE SET "
            "max_abs_delta = EXCLUDED.max_abs_delta, last_changed_at = EXCLUDED.last_changed_at"
        ),
        {
            **_params(key),
            "s": [c.subject_id for c in ordered],
            "v": [orjson.dumps(dict(c.settled_values)).decode() for c in ordered],
            "n": [c.new_subject for c in ordered],
            "d": [c.max_abs_delta for c in ordered],
            "now": now,
        },
    )


async def changed_count(session: AsyncSession) -> int:
    """Settled periods of active or ended campaigns whose inputs changed since."""
    changed = await session.scalar(
        text(
            "SELECT count(*) FROM (SELECT DISTINCT x.campaign_id, x.rule_id, x.period "
            "FROM settlement_changes x JOIN campaigns c USING (campaign_id) "
            f"WHERE c.state IN (:active, :ended) AND {_CHANGED}) s"
        ),
        {"active": ACTIVE, "ended": ENDED},
    )
    return int(changed or 0)
