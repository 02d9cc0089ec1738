"""Lifecycle stages and business KPIs of a batch (SPEC §12), inside its transaction.

Each user-month and user-day contributes to the KPI rows of its province (domain.kpis); this
takes what the batch changed — counters, `first_seen`, stages, the group a user sent most
messages to — and adds each changed contribution's difference, so the KPIs stay exact without
ever being recomputed. Stages are recomputed for the months a change can move
(domain.lifecycle): the touched months, the two after a month that became active, and the
months of a `first_seen` that moved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.batch import UserDayDelta
from services.scoring.domain.contributions import UserMonthKey
from services.scoring.domain.kpis import (
    NO_COUNTS,
    Counts,
    KpiDeltas,
    add_contribution,
    day_contribution,
    month_contribution,
    nonzero,
    province_key,
)
from services.scoring.domain.lifecycle import Lifecycle, lifecycle_of, months_to_recompute
from services.scoring.domain.periods import month_of, next_month
from services.scoring.domain.points import is_active
from services.scoring.domain.sessions import UserDayKey
from services.scoring.store import kpis
from services.scoring.store.kpis import MonthSnapshot

FirstSeen = Mapping[str, tuple[date | None, date | None]]  # user → (before, after)


def months_to_stage(
    touched: Mapping[UserMonthKey, MonthSnapshot | None],
    messages_after: Mapping[UserMonthKey, int],
    first_seen: FirstSeen,
) -> set[UserMonthKey]:
    """The user months whose stage or `loyal` the batch can have changed."""
    out: set[UserMonthKey] = set()
    for (user_id, month), before in touched.items():
        was = before is not None and is_active(before.counts.messages)
        flipped = not was and is_active(messages_after.get((user_id, month), 0))
        m = month
        for _ in range(months_to_recompute(month, flipped)):
            out.add((user_id, m))
            m = next_month(m)
    for user_id, (old, new) in first_seen.items():
        if old != new:
            out.update((user_id, month_of(d)) for d in (old, new) if d is not None)
    return out


@dataclass(slots=True)
class StagedBatch:
    """A batch's user months before and after, stages saved, waiting for the group locks."""

    before: dict[UserMonthKey, MonthSnapshot]
    after: dict[UserMonthKey, MonthSnapshot]
    restaged: set[UserMonthKey]

    def groups(self) -> set[str]:
        """The groups whose province the KPIs read: lock them first."""
        both = (*self.before.values(), *self.after.values())
        return {s.top_group for s in both if s.top_group}


async def restage(
    session: AsyncSession,
    first_seen: FirstSeen,
    before: Mapping[UserMonthKey, MonthSnapshot],
    touched: set[UserMonthKey],
) -> StagedBatch:
    """Recompute and store the stages the batch can have moved. `before` holds the stored
    snapshots of `touched` (the batch's user months) from before the batch; their counters
    and top groups are already updated."""
    after_touched = await kpis.month_snapshots(session, touched)
    staged = months_to_stage(
        {k: before.get(k) for k in touched},
        {k: s.counts.messages for k, s in after_touched.items()},
        first_seen,
    )
    # Months restaged but not touched keep their counters and top group.
    snapshots_before = {**before, **await kpis.month_snapshots(session, staged - touched)}
    after = {**snapshots_before, **after_touched}

    changed: dict[UserMonthKey, Lifecycle] = {}
    for key, (activity, stored) in (await kpis.activity(session, staged)).items():
        now = lifecycle_of(activity)
        if now != stored and (stored is not None or now.stage is not None):
            changed[key] = now
    await kpis.save_lifecycles(session, changed)
    for key, lc in changed.items():
        prior = after.get(key)
        after[key] = MonthSnapshot(
            prior.counts if prior else NO_COUNTS, lc, prior.top_group if prior else None
        )
    return StagedBatch(snapshots_before, after, set(changed))


async def add_kpi_changes(
    session: AsyncSession,
    staged: StagedBatch,
    first_seen: FirstSeen,
    day_increments: Mapping[UserDayKey, UserDayDelta],
    days_after: Mapping[UserDayKey, Counts],
    created_groups: set[str],
) -> None:
    """Add every changed contribution's difference to the KPI rows. The caller holds the locks
    of `staged.groups()` and of the groups created in this batch."""
    provinces = await kpis.provinces_of(session, staged.groups() | created_groups)
    day_deltas: KpiDeltas = {}
    month_deltas: KpiDeltas = {}
    # A group created in this batch: the users counted under its pending key move to its
    # province first, so "before" below is at the province as it is now.
    pending_days, pending_months = await kpis.pending_rows(
        session, [g for g in created_groups if provinces.get(g) is not None]
    )
    for pending, deltas in ((pending_days, day_deltas), (pending_months, month_deltas)):
        for (period, pending_key, client), values in pending.items():
            province = provinces[pending_key[1:]]
            assert province is not None
            add_contribution(deltas, period, pending_key, {client: values}, -1)
            add_contribution(deltas, period, province, {client: values}, 1)

    def where(snapshot: MonthSnapshot | None) -> str:
        top = snapshot.top_group if snapshot else None
        return province_key(top, provinces.get(top) if top else None)

    for month_key in staged.before.keys() | staged.after.keys():
        for snapshot, sign in (
            (staged.before.get(month_key), -1),
            (staged.after.get(month_key), 1),
        ):
            if snapshot is not None:
                lc = snapshot.lifecycle
                contribution = month_contribution(snapshot.counts, lc.stage, lc.loyal)
                add_contribution(month_deltas, month_key[1], where(snapshot), contribution, sign)

    await _day_deltas(session, day_deltas, first_seen, day_increments, days_after, staged, where)
    await kpis.add_to_kpis(session, nonzero(day_deltas), nonzero(month_deltas))


async def _day_deltas(
    session: AsyncSession,
    deltas: KpiDeltas,
    first_seen: FirstSeen,
    increments: Mapping[UserDayKey, UserDayDelta],
    days_after: Mapping[UserDayKey, Counts],
    staged: StagedBatch,
    where: Callable[[MonthSnapshot | None], str],
) -> None:
    """Each changed user-day's difference: its counters, whether it is the user's first day,
    and — when the month's province moved — every day of that month."""
    days_by_month: dict[UserMonthKey, set[date]] = {}
    for user_id, day in days_after:
        days_by_month.setdefault((user_id, month_of(day)), set()).add(day)
    for user_id, (old, new) in first_seen.items():
        if old != new:
            for d in (old, new):
                if d is not None:
                    days_by_month.setdefault((user_id, month_of(d)), set()).add(d)
    moved = {k for k in days_by_month if where(staged.before.get(k)) != where(staged.after.get(k))}
    stored = await kpis.days_of_months(session, moved)
    for user_id, day in stored:
        days_by_month[(user_id, month_of(day))].add(day)
    for user_id, month in moved:
        for d in first_seen.get(user_id, (None, None)):
            if d is not None and month_of(d) == month:
                days_by_month[(user_id, month)].add(d)
    for (user_id, month), days in days_by_month.items():
        old, new = first_seen.get(user_id, (None, None))  # None: not in the batch
        province_before = where(staged.before.get((user_id, month)))
        province_after = where(staged.after.get((user_id, month)))
        for day in days:
            key = (user_id, day)
            counts_after = days_after.get(key) or stored.get(key) or NO_COUNTS
            inc = increments.get(key)
            counts_before = (
                counts_after.minus(_counts(inc)) if inc and key in days_after else counts_after
            )
            add_contribution(
                deltas, day, province_before, day_contribution(counts_before, day == old), -1
            )
            add_contribution(
                deltas, day, province_after, day_contribution(counts_after, day == new), 1
            )


def _counts(inc: UserDayDelta) -> Counts:
    return Counts(
        messages=inc.messages,
        messages_mobile=inc.messages_mobile,
        messages_sms=inc.messages_sms,
        online_seconds_pc=inc.online_seconds_pc,
        online_seconds_mobile=inc.online_seconds_mobile,
        sessions_pc=inc.sessions_pc,
        sessions_mobile=inc.sessions_mobile,
        sessions_sms=inc.sessions_sms,
        checkins=inc.checkins,
    )
