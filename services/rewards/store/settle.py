"""Settlement (SPEC §5): period-end rules run once per period after the grace, on exactly one
replica, catching up after downtime.

Exactly once: the settlement row is inserted first in the same transaction that records the
grants. A second replica's insert waits on the primary key until the first commits, then finds
the row and skips; if the first dies, its transaction rolls back and the second settles.

Fault isolation (SPEC §16): a campaign whose periods cannot be listed, or a period whose
settlement raises, is recorded in `settlement_failures` with its reason (rule and period '*'
for the campaign as a whole) and skipped until its next attempt is due; every other period
settles. The failure row goes in the transaction that finally settles the period.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain.lifecycle import ACTIVE, ENDED
from services.rewards.domain.periods import Period, periods_in_window
from services.rewards.domain.retry import Backoff
from services.rewards.domain.rules import LotteryRule, RankRule, ScaledRule
from services.rewards.store.campaigns import LiveCampaign, live_campaign_rows, read_live
from services.rewards.store.draws import freeze_draw as freeze_draw_in
from services.rewards.store.evaluate import period_decisions
from services.rewards.store.ledger import (
    Recorded,
    dissolutions,
    record_grants,
    revoke_for_dissolved_groups,
)
from shared.failures import failure_reason

SETTLEMENT_SECONDS = Histogram(
    "engage_settlement_seconds",
    "Time to settle one (campaign, rule, period).",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
BUDGET_REMAINING = Gauge("engage_budget_remaining", "Units of budget left.", ["campaign", "kind"])
BUDGET_LIMIT = Gauge("engage_budget_limit", "Units of budget in all.", ["campaign", "kind"])
SETTLEMENT_FAILURES = Counter(
    "engage_settlement_failures_total",
    "Settlement attempts that failed for a reason other than a transient fault.",
    ["campaign"],
)
SETTLEMENTS_FAILING = Gauge(
    "engage_settlements_failing",
    "Periods (or whole campaigns, rule '*') of active or ended campaigns whose settlement "
    "failed and waits for a retry.",
)
UNLISTED = "*"  # rule and period of a failure to list a campaign's periods at all

PeriodRule = RankRule | LotteryRule | ScaledRule


@dataclass(frozen=True, slots=True)
class Due:
    campaign: LiveCampaign
    rule: PeriodRule
    period: Period


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


@dataclass(slots=True)
class DueSettlements:
    due: list[Due]
    unlisted: list[Failed]  # campaigns whose periods could not be listed, recorded just now


@dataclass(frozen=True, slots=True)
class _Retry:
    version: int
    next_attempt_at: datetime

    def waits(self, now: datetime, version: int) -> bool:
        """Not due yet — unless a new version went live since, which may have fixed it."""
        return self.next_attempt_at > now and self.version == version


def _periods_past_grace(
    c: LiveCampaign, now: datetime, tz: ZoneInfo
) -> list[tuple[PeriodRule, Period]]:
    d = c.definition
    out: list[tuple[PeriodRule, Period]] = []
    for rule in d.rules:
        if not isinstance(rule, RankRule | LotteryRule | ScaledRule):
            continue
        for p in periods_in_window(rule.period, d.starts_at, d.ends_at, tz):
            if c.ended_at is not None and p.start >= c.ended_at:
                continue  # ended early: later periods never happen
            if p.settle_due() <= now:
                out.append((rule, p))
    return out


async def due_settlements(
    session: AsyncSession, now: datetime, tz: ZoneInfo, backoff: Backoff
) -> DueSettlements:
    """Periods of active or ended campaigns past their grace and not yet settled, oldest first.

    A paused campaign settles nothing; on resume it catches up. A period whose last attempt
    failed waits for its next attempt. A campaign whose periods cannot be listed (its stored
    definition no longer validates, its window cannot be represented) is recorded as failed
    and skipped; failures of periods that no longer need settling are dropped. Only flushes.
    """
    done = {
        (r.campaign_id, r.rule_id, r.period)
        for r in await session.execute(text("SELECT campaign_id, rule_id, period FROM settlements"))
    }
    retries = {
        (r.campaign_id, r.rule_id, r.period): _Retry(r.version, r.next_attempt_at)
        for r in await session.execute(
            text(
                "SELECT campaign_id, rule_id, period, version, next_attempt_at "
                "FROM settlement_failures ORDER BY campaign_id, rule_id, period"
            )  # sorted: replicas drop stale rows, and lock them, in one order
        )
    }
    out = DueSettlements([], [])
    resolved: list[tuple[str, str, str]] = []
    for row in await live_campaign_rows(session, (ACTIVE, ENDED)):
        cid = row.campaign_id
        whole = retries.get((cid, UNLISTED, UNLISTED))
        if whole is not None and whole.waits(now, row.live_version):
            continue
        # Everything about one campaign that can raise (a stored definition that no longer
        # validates, a window whose periods cannot be represented) stays with that campaign.
        try:
            campaign = read_live(row)
            candidates = [
                (rule, p)
                for rule, p in _periods_past_grace(campaign, now, tz)
                if (cid, rule.id, p.label) not in done
            ]
        except Exception as exc:
            reason = failure_reason(exc)
            failed = await record_failure(
                session, cid, UNLISTED, UNLISTED, row.live_version, reason, now, backoff
            )
            out.unlisted.append(failed)
            continue
        keys = {(cid, rule.id, p.label) for rule, p in candidates}
        resolved += [k for k in retries if k[0] == cid and k not in keys]
        for rule, p in candidates:
            retry = retries.get((cid, rule.id, p.label))
            if retry is None or not retry.waits(now, campaign.version):
                out.due.append(Due(campaign, rule, p))
    for cid, rule_id, period in resolved:
        await _forget_failure(session, cid, rule_id, period)
    out.due.sort(key=lambda x: (x.period.end, x.campaign.campaign_id, x.rule.id))
    return out


async def record_failure(
    session: AsyncSession,
    campaign_id: str,
    rule_id: str,
    period: str,
    version: int,
    reason: str,
    now: datetime,
    backoff: Backoff,
) -> Failed:
    """One more failed attempt, and when to try again. Only flushes."""
    key = {"c": campaign_id, "r": rule_id, "p": period}
    attempts = (
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
            {**key, "v": version, "reason": reason, "now": now},
        )
    ).scalar_one()
    next_attempt_at = now + backoff.delay(attempts)
    await session.execute(
        text(
            "UPDATE settlement_failures SET next_attempt_at = :t "
            "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
        ),
        {**key, "t": next_attempt_at},
    )
    return Failed(campaign_id, rule_id, period, version, reason, attempts, next_attempt_at)


def count_failure(failed: Failed) -> None:
    """Once its transaction committed."""
    SETTLEMENT_FAILURES.labels(failed.campaign_id).inc()


async def _forget_failure(
    session: AsyncSession, campaign_id: str, rule_id: str, period: str
) -> None:
    await session.execute(
        text(
            "DELETE FROM settlement_failures "
            "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
        ),
        {"c": campaign_id, "r": rule_id, "p": period},
    )


@dataclass(frozen=True, slots=True)
class Settled:
    campaign_id: str
    rule_id: str
    period: str
    version: int
    grants: int
    seconds: float


async def settle(
    sessions: async_sessionmaker[AsyncSession], due: Due, tz: ZoneInfo, now: datetime
) -> Settled | None:
    """Settle one period, or None if another replica has (or is doing) it."""
    c, rule, period = due.campaign, due.rule, due.period
    started = time.perf_counter()
    recorded = Recorded()
    async with sessions() as session, session.begin():
        claimed = (
            await session.execute(
                text(
                    "INSERT INTO settlements (campaign_id, rule_id, period, version) "
                    "VALUES (:c, :r, :p, :v) ON CONFLICT DO NOTHING RETURNING 1"
                ),
                {"c": c.campaign_id, "r": rule.id, "p": period.label, "v": c.version},
            )
        ).first()
        if claimed is None:
            return None

        async def freeze_draw(
            campaign_id: str, lottery: LotteryRule, p: Period, entries: list[str]
        ) -> list[str]:
            return await freeze_draw_in(session, campaign_id, c.version, lottery, p, entries, now)

        decisions = await period_decisions(
            session, c.campaign_id, c.definition, rule, period, tz, freeze_draw
        )
        recorded = await record_grants(
            session, c.campaign_id, c.version, decisions, c.definition.name
        )
        # A group dissolved before this settlement (its record may have come first) still
        # loses its revocable grants: recorded, then revoked, so the ledger shows both.
        revocable = {d.group_id for d in decisions if d.revocable and d.group_id}
        if revocable:
            dissolved = await dissolutions(session, revocable)
            recorded.rows += await revoke_for_dissolved_groups(session, dissolved, now, tz)
        await _forget_failure(session, c.campaign_id, rule.id, period.label)
        seconds = time.perf_counter() - started
        await session.execute(
            text(
                "UPDATE settlements SET seconds = :s, grants = :n, settled_at = :now "
                "WHERE campaign_id = :c AND rule_id = :r AND period = :p"
            ),
            {
                "s": seconds,
                "n": len(recorded.rows),
                "now": now,
                "c": c.campaign_id,
                "r": rule.id,
                "p": period.label,
            },
        )
    recorded.count()
    SETTLEMENT_SECONDS.labels(rule.kind).observe(seconds)
    return Settled(c.campaign_id, rule.id, period.label, c.version, len(recorded.rows), seconds)


async def refresh_gauges(session: AsyncSession) -> None:
    """Budgets and failing settlements, as the database has them now."""
    rows = await session.execute(
        text("SELECT campaign_id, kind, total, total - spent AS left FROM budgets")
    )
    for r in rows:
        BUDGET_REMAINING.labels(r.campaign_id, r.kind).set(r.left)
        BUDGET_LIMIT.labels(r.campaign_id, r.kind).set(r.total)
    # A paused campaign is not retried (it settles nothing); pausing it is how to stop the alert
    # while a fixed version is prepared.
    failing = await session.scalar(
        text(
            "SELECT count(*) FROM settlement_failures f JOIN campaigns c USING (campaign_id) "
            "WHERE c.state IN (:active, :ended)"
        ),
        {"active": ACTIVE, "ended": ENDED},
    )
    SETTLEMENTS_FAILING.set(failing or 0)


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
