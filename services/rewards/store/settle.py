"""Settlements as stored (SPEC §5, §16): settled periods with their figures, periods whose
settlement failed with the reason and the next attempt, and what the gauges show. Only
flushes: usecases/settlement.py decides and owns the transactions.

Rule and period '*' (`UNLISTED`) stand for a campaign whose periods could not be listed at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.lifecycle import ACTIVE, ENDED
from services.rewards.domain.retry import PendingRetry

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


async def settlements_page(
    session: AsyncSession, campaign_id: str, limit: int, after: str | None
) -> list[dict[str, Any]]:
    """Settled and failing periods of a campaign, by rule and period."""
    rows = await session.execute(
        text(
            "SELECT * FROM ("
            "SELECT campaign_id, rule_id, period, version, 'settled' AS status, settled_at, "
            "seconds, grants, NULL AS reason, NULL::int AS attempts, "
            "NULL::timestamptz AS first_failed_at, NULL::timestamptz AS last_failed_at, "
            "NULL::timestamptz AS next_attempt_at FROM settlements WHERE campaign_id = :c "
            "UNION ALL "
            "SELECT campaign_id, rule_id, period, version, 'failed', NULL, NULL, NULL, reason, "
            "attempts, first_failed_at, last_failed_at, next_attempt_at "
            "FROM settlement_failures WHERE campaign_id = :c"
            ") s WHERE (CAST(:after AS text) IS NULL OR rule_id || '/' || period > :after) "
            "ORDER BY rule_id || '/' || period LIMIT :n"
        ),
        {"c": campaign_id, "after": after, "n": limit},
    )
    return [dict(r._mapping) for r in rows]
