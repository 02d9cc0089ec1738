"""Settle periods (SPEC §5, §16): the pass the settler runs on its timer and on demand.

Period-end rules settle once per period after the grace, on exactly one replica, catching up
after downtime. A pass lists the due periods, waits until rewards has applied the metrics
published so far, then settles each period in a transaction of its own: the settlement row is
claimed first in the transaction that records the grants, so a second replica finds it and
skips (store/settle.py `claim`). Excluded subjects never get a grant (SPEC §10); a campaign
with `review: true` records its grants `held`, published only when an approver releases the
period (usecases/review.py).

Fault isolation (SPEC §16): a campaign whose periods cannot be listed, or a period whose
settlement raises — a bug, a data error — is recorded as failed with its reason (rule and
period '*' for the campaign as a whole) and retried with backoff; every other period settles.
Only a transient fault (the database unreachable) ends the pass. The failure row goes in the
transaction that finally settles the period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain.exclusions import without_excluded
from services.rewards.domain.lifecycle import ACTIVE, ENDED
from services.rewards.domain.periods import Period
from services.rewards.domain.retry import Backoff
from services.rewards.domain.rules.base import PeriodEndKind
from services.rewards.domain.rules.registry import KINDS, AnyRule
from services.rewards.domain.settlement import periods_past_grace
from services.rewards.store import settle as settlements
from services.rewards.store import tickets
from services.rewards.store.campaigns import LiveCampaign, live_campaign_rows, read_live
from services.rewards.store.draws import FrozenDraws
from services.rewards.store.holdouts import holdout_of
from services.rewards.store.inputs import StoredInputs
from services.rewards.store.ledger import (
    dissolutions,
    overdue_by_campaign,
    record_grants,
    revoke_for_dissolved_groups,
)
from services.rewards.store.settle import UNLISTED, Failed, SettlementKey
from shared.errors import Unavailable
from shared.failures import failure_reason, is_transient

log = logging.getLogger(__name__)

SETTLEMENT_SECONDS = Histogram(
    "engage_settlement_seconds",
    "Time to settle one (campaign, rule, period).",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
# Zero series for every kind that settles, from the start: a first settlement then shows as an
# increase to rate() (a series born with its final count shows none — the panel stayed empty).
for _kind in KINDS.values():
    if isinstance(_kind, PeriodEndKind):
        SETTLEMENT_SECONDS.labels(_kind.name)
BUDGET_REMAINING = Gauge("engage_budget_remaining", "Units of budget left.", ["campaign", "kind"])
BUDGET_LIMIT = Gauge("engage_budget_limit", "Units of budget in all.", ["campaign", "kind"])
SETTLEMENT_FAILURES = Counter(
    "engage_settlement_failures_total",
    "Settlement attempts that failed for a reason other than a transient fault.",
    ["campaign"],
)
GRANTS_OVERDUE = Gauge(
    "engage_grants_overdue",
    "Granted grants past their fulfil-by day (local) and not fulfilled (SPEC §11).",
    ["campaign"],
)
_overdue_reported: set[str] = set()  # campaigns this process has set the gauge for
SETTLEMENTS_CHANGED = Gauge(
    "engage_settlements_changed",
    "Settled periods of active or ended campaigns whose inputs changed after they settled "
    "(SPEC §14); their grants stay as settled.",
)
SETTLEMENTS_FAILING = Gauge(
    "engage_settlements_failing",
    "Periods (or whole campaigns, rule '*') of active or ended campaigns whose settlement "
    "failed and waits for a retry.",
)

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Due:
    campaign: LiveCampaign
    rule: AnyRule
    kind: PeriodEndKind[Any]
    period: Period

    @property
    def key(self) -> SettlementKey:
        return (self.campaign.campaign_id, self.rule.id, self.period.label)


@dataclass(slots=True)
class DueSettlements:
    due: list[Due]
    unlisted: list[Failed]  # campaigns whose periods could not be listed, recorded just now


@dataclass(frozen=True, slots=True)
class Settled:
    campaign_id: str
    rule_id: str
    period: str
    version: int
    grants: int
    seconds: float


@dataclass(slots=True)
class SettlementRun:
    settled: list[Settled] = field(default_factory=list)
    already_settled: int = 0  # by another replica meanwhile
    waiting: int = 0  # draws whose ledger tickets are not final yet (SPEC §10)
    failed: list[Failed] = field(default_factory=list)  # recorded, to be retried


async def settle_due(
    sessions: Sessions,
    tz: ZoneInfo,
    clock: Callable[[], datetime],
    backoff: Backoff,
    metrics_caught_up: Callable[[], Awaitable[bool]],
) -> SettlementRun:
    """One pass: every due period settled or recorded as failed; 503 while metrics lag."""
    run = SettlementRun()
    plan = await due_settlements(sessions, clock(), tz, backoff)
    for failed in plan.unlisted:
        _failed(run, failed)
    if plan.due and not await metrics_caught_up():
        raise Unavailable(
            "settlement waits until rewards has applied the published metrics", retry_after_s=10
        )
    for item in plan.due:
        try:
            if await _waits(sessions, item, tz):
                run.waiting += 1
                continue
            done = await settle_period(sessions, item, tz, clock())
        except Exception as exc:
            if is_transient(exc):
                raise
            _failed(run, await record_failure(sessions, item, exc, clock(), backoff), exc)
            continue
        if done is None:
            run.already_settled += 1
        else:
            run.settled.append(done)
            log.info(
                "period settled",
                extra={
                    "campaign": done.campaign_id,
                    "rule": done.rule_id,
                    "period": done.period,
                    "grants": done.grants,
                    "seconds": round(done.seconds, 3),
                },
            )
    return run


async def due_settlements(
    sessions: Sessions, now: datetime, tz: ZoneInfo, backoff: Backoff
) -> DueSettlements:
    """Periods of active or ended campaigns past their grace and not yet settled, oldest first.

    A paused campaign settles nothing; on resume it catches up. A period whose last attempt
    failed waits for its next attempt. A campaign whose periods cannot be listed (its stored
    definition no longer validates, its window cannot be represented) is recorded as failed
    and skipped; failures of periods that no longer need settling are dropped.
    """
    out = DueSettlements([], [])
    async with sessions() as session, session.begin():
        done = await settlements.settled_keys(session)
        retries = await settlements.pending_retries(session)
        resolved: list[SettlementKey] = []
        for row in await live_campaign_rows(session, (ACTIVE, ENDED)):
            cid = row.campaign_id
            whole = retries.get((cid, UNLISTED, UNLISTED))
            if whole is not None and whole.waits(now, row.live_version):
                continue
            # Everything about one campaign that can raise (a stored definition that no longer
            # validates, a window whose periods cannot be represented) stays with that campaign.
            try:
                campaign = read_live(row)
                d = campaign.definition
                candidates = [
                    Due(campaign, rule, kind, p)
                    for rule, kind, p in periods_past_grace(
                        d.rules, d.window, campaign.ended_at, now, tz
                    )
                    if (cid, rule.id, p.label) not in done
                ]
            except Exception as exc:
                key = (cid, UNLISTED, UNLISTED)
                reason = failure_reason(exc)
                out.unlisted.append(
                    await _add_failure(session, key, row.live_version, reason, now, backoff)
                )
                continue
            keys = {c.key for c in candidates}
            resolved += [k for k in retries if k[0] == cid and k not in keys]
            for c in candidates:
                retry = retries.get(c.key)
                if retry is None or not retry.waits(now, campaign.version):
                    out.due.append(c)
        for key in resolved:
            await settlements.forget_failure(session, key)
    out.due.sort(key=lambda x: (x.period.end, x.campaign.campaign_id, x.rule.id))
    return out


async def settle_period(
    sessions: Sessions, due: Due, tz: ZoneInfo, now: datetime
) -> Settled | None:
    """Settle one period in one transaction, or None if another replica has (or is doing) it."""
    c, rule, period = due.campaign, due.rule, due.period
    started = time.perf_counter()
    async with sessions() as session, session.begin():
        if not await settlements.claim(session, due.key, c.version):
            return None
        draws = FrozenDraws(session, c.campaign_id, c.version, now)
        inputs = StoredInputs.of(session, c.campaign_id, c.definition, tz, draws)
        # The rules pass over excluded subjects; this is the settlement's own check (SPEC §10).
        decisions, _ = without_excluded(
            await due.kind.settle(rule, period, inputs), await inputs.exclusions()
        )
        holdout = await holdout_of(session, c.campaign_id, c.definition.holdout_percent)
        recorded = await record_grants(
            session,
            c.campaign_id,
            c.version,
            decisions,
            c.definition.name,
            c.definition.review,
            holdout,
        )
        # A group dissolved before this settlement (its record may have come first) still
        # loses its revocable grants: recorded, then revoked, so the ledger shows both.
        revocable = {d.group_id for d in decisions if d.revocable and d.group_id}
        if revocable:
            dissolved = await dissolutions(session, revocable)
            recorded.rows += await revoke_for_dissolved_groups(session, dissolved, now, tz)
        await settlements.forget_failure(session, due.key)
        seconds = time.perf_counter() - started
        await settlements.record_settled(session, due.key, seconds, len(recorded.rows), now)
    recorded.count()
    SETTLEMENT_SECONDS.labels(due.kind.name).observe(seconds)
    return Settled(c.campaign_id, rule.id, period.label, c.version, len(recorded.rows), seconds)


async def _waits(sessions: Sessions, due: Due, tz: ZoneInfo) -> bool:
    """Whether the period reads another rule's grants that are not final yet: it settles on a
    later pass (a draw counting "My Fetion" tickets waits for their month and its review)."""
    source = due.kind.reads_grants_of(due.rule)
    if source is None:
        return False
    async with sessions() as session:
        why = await tickets.source_waiting(session, *source, due.period, tz)
    if why is not None:
        log.info("settlement waits", extra={"campaign": due.campaign.campaign_id,
                 "rule": due.rule.id, "period": due.period.label, "reason": why})  # fmt: skip
    return why is not None


async def record_failure(
    sessions: Sessions, due: Due, exc: Exception, now: datetime, backoff: Backoff
) -> Failed:
    """One more failed attempt at a period, in a transaction of its own."""
    async with sessions() as session, session.begin():
        return await _add_failure(
            session, due.key, due.campaign.version, failure_reason(exc), now, backoff
        )


async def _add_failure(
    session: AsyncSession,
    key: SettlementKey,
    version: int,
    reason: str,
    now: datetime,
    backoff: Backoff,
) -> Failed:
    attempts = await settlements.add_failure(session, key, version, reason, now)
    next_attempt_at = now + backoff.delay(attempts)
    await settlements.schedule_retry(session, key, next_attempt_at)
    return Failed(*key, version, reason, attempts, next_attempt_at)


def _failed(run: SettlementRun, failed: Failed, exc: Exception | None = None) -> None:
    """A failure recorded (and committed): counted and logged."""
    run.failed.append(failed)
    SETTLEMENT_FAILURES.labels(failed.campaign_id).inc()
    log.error(
        "settlement failed; retried later",
        exc_info=exc,
        extra={
            "campaign": failed.campaign_id,
            "rule": failed.rule_id,
            "period": failed.period,
            "attempts": failed.attempts,
            "next_attempt_at": failed.next_attempt_at.isoformat(),
            "reason": failed.reason,
        },
    )


async def refresh_gauges(sessions: Sessions, today: date) -> None:
    """Budgets, failing settlements and overdue grants (on the local date `today`), as the
    database has them now."""
    async with sessions() as session:
        levels = await settlements.budget_levels(session)
        failing = await settlements.failing_count(session)
        changed = await settlements.changed_count(session)
        overdue = await overdue_by_campaign(session, today)
    for b in levels:
        BUDGET_REMAINING.labels(b.campaign_id, b.kind).set(b.left)
        BUDGET_LIMIT.labels(b.campaign_id, b.kind).set(b.total)
    SETTLEMENTS_FAILING.set(failing)
    SETTLEMENTS_CHANGED.set(changed)
    for campaign_id in _overdue_reported - overdue.keys():
        GRANTS_OVERDUE.labels(campaign_id).set(0)  # all fulfilled (or revoked) since
    for campaign_id, n in overdue.items():
        GRANTS_OVERDUE.labels(campaign_id).set(n)
    _overdue_reported.update(overdue)
