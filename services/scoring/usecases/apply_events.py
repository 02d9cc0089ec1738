"""Apply a batch of events to scoring's metrics, inside the consumer's transaction (SPEC §4).

The flow: ledger (drop repeats) → screen (group facts and authority, SPEC §14: refused events
change nothing) → plan (domain) → sessions → user days → user months → membership → group-month
deltas (domain) → group facts and months → anomaly flags' inputs → changelog. The caller
(consumers/events.py) owns the transaction: nothing here commits.

Concurrency (several replicas, SPEC §4 "scales out"): user-level rows belong to one partition
(events are keyed by user_id, and a retried event keeps its user), so replicas never share them,
and a partition's batches are serialised by the lock on its stored offset. Group rows are
shared: they change only by deltas, which commute, under locks taken in one ordered statement
(store/groups.py), after the group-fact locks of the screen (store/group_facts.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.anomalies import AnomalyThresholds
from services.scoring.domain.batch import (
    BatchPlan,
    add_online_time,
    add_session_counts,
    plan_batch,
)
from services.scoring.domain.contributions import GroupMonthDelta, GroupMonthKey, group_month_deltas
from services.scoring.domain.friends import earliest, moves
from services.scoring.domain.group_facts import Refusal
from services.scoring.domain.membership import MembershipFlip, membership_flips, pairs_of, spans_of
from services.scoring.domain.periods import local_day, month_of
from services.scoring.domain.sessions import update_sessions
from services.scoring.store import (
    friends,
    group_facts,
    groups,
    kpis,
    ledger,
    membership,
    sessions,
    user_metrics,
    users,
)
from services.scoring.store.changelog import (
    group_month_key,
    mark_changed,
    user_day_key,
    user_month_key,
)
from services.scoring.usecases import anomalies
from services.scoring.usecases.group_facts import screen_events
from services.scoring.usecases.kpis import add_kpi_changes, restage
from shared.contract import Envelope

STEP_SECONDS = Histogram(
    "engage_scoring_step_seconds",
    "Time per step of applying a batch (database included).",
    ["step"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


@contextmanager
def _step(name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    STEP_SECONDS.labels(name).observe(time.perf_counter() - start)


DEFAULT_THRESHOLDS = AnomalyThresholds()


@dataclass(slots=True)
class BatchOutcome:
    new_events: list[Envelope] = field(default_factory=list)
    duplicates: int = 0
    sealed: list[Envelope] = field(default_factory=list)  # their day's ledger was dropped
    refused: list[Refusal] = field(default_factory=list)  # by a rule of SPEC §14, audited


async def apply_events(
    session: AsyncSession,
    envelopes: Sequence[Envelope],
    tz: ZoneInfo,
    now: datetime,
    thresholds: AnomalyThresholds = DEFAULT_THRESHOLDS,
) -> BatchOutcome:
    """Fold the batch's never-seen events into every metric they change, and mark those
    metrics for the changelog. The days' ledger partitions must exist and import days be stamped
    (LedgerDays.prepare_events, before the batch's transaction)."""
    outcome = BatchOutcome()
    with _step("ledger"):
        kept = await ledger.keep_new(session, envelopes)
    outcome.new_events, outcome.sealed = kept.fresh, kept.sealed
    outcome.duplicates = len(envelopes) - len(outcome.new_events) - len(outcome.sealed)
    if not outcome.new_events:
        return outcome
    # Group facts are decided first, in the batch's order: a refused event changes nothing.
    with _step("screen"):
        screening = await screen_events(session, outcome.new_events)
    outcome.refused = screening.refused
    if not screening.accepted:
        return outcome
    with _step("plan"):
        plan = plan_batch(screening.accepted, tz)
    with _step("users"):
        first_seen = await users.record_seen(session, plan.first_seen)
    with _step("friends"):
        friend_days = await _apply_friendships(session, plan)

    if plan.sessions:
        with _step("sessions"):
            stored = await sessions.lock_sessions(
                session, sorted({(f.user_id, f.session_id) for f in plan.sessions})
            )
            update = update_sessions(stored, plan.sessions, tz)
            await sessions.save_sessions(session, update.states)
            add_online_time(plan.user_day, update.online_time)
            add_session_counts(plan.user_day, update.counted)
    with _step("user_days"):
        days_after = await user_metrics.add_to_user_days(session, plan.user_day)
    days = list(days_after)
    user_months = {(user_id, month_of(day)) for user_id, day in days}
    with _step("user_months"):
        kpi_before = await kpis.month_snapshots(session, user_months)
        before = await user_metrics.member_months(session, user_months)
        after = await user_metrics.recompute_user_months(session, user_months)
        await kpis.add_group_messages(session, plan.group_messages)
    with _step("lifecycle"):
        staged = await restage(session, first_seen, kpi_before, set(user_months))

    # Member contributions are taken under the membership before this batch's joins and
    # leaves; the flips then move whole contributions at the new values (domain.contributions).
    with _step("member_groups"):
        groups_of = await membership.groups_at_month_end(session, user_months, tz)
    with _step("membership"):
        flips = await _apply_membership(session, plan, tz, now)
    current = after
    if flips:
        missing = {(f.user_id, f.month) for f in flips} - after.keys()
        current = {**await user_metrics.member_months(session, missing), **after}
    deltas = group_month_deltas(groups_of, before, current, flips, plan.group_month)

    with _step("group_locks"):
        await groups.lock_groups(
            session, {g for g, _ in deltas} | plan.groups_seen | staged.groups()
        )
    with _step("group_facts"):
        await groups.record_seen(session, plan.groups_seen)
        await groups.record_created(session, plan.created)
        await groups.record_dissolved(session, plan.dissolved)
        await group_facts.record_transfers(session, screening.facts)
    with _step("group_months"):
        changed = _nonzero(deltas)
        await groups.open_group_months(
            session, {key: delta.members for key, delta in changed.items()}, tz
        )
        group_months = await groups.add_to_group_months(session, changed)

    with _step("kpis"):
        await add_kpi_changes(
            session,
            staged,
            first_seen,
            plan.user_day,
            days_after,
            {c.group_id for c in plan.created},
        )
        moved = {u for u, (old, new) in first_seen.items() if old is not None and old != new}
        republish = await kpis.records_of_users(session, moved)

    with _step("anomaly_inputs"):
        flags_may_change = await anomalies.keep_inputs(session, plan, tz, thresholds)

    with _step("changelog"):
        await mark_changed(
            session,
            [
                *flags_may_change,
                # A member's contribution can move the group's top member even when the
                # group's sums net to zero (domain.anomalies.dominant_member).
                *(group_month_key(g, m) for g, m in deltas),
                # An owner transfer changes no counter but the published owner.
                *(
                    group_month_key(g, month_of(local_day(at, tz)))
                    for g, f in screening.facts.items()
                    if f.transfer_at is not None
                    for at in (f.transfer_at, now)
                ),
                *(user_day_key(u, d) for u, d in days),
                # A friendship's first add moved: its old and new adder's day and month.
                *(user_day_key(u, d) for u, d in friend_days),
                *(user_month_key(u, month_of(d)) for u, d in friend_days),
                *(user_month_key(u, m) for u, m in after),
                # A stage (or `loyal`) moved in a month the batch did not touch; a moved
                # `first_seen` is on every record of the user.
                *(user_month_key(u, m) for u, m in staged.restaged),
                *republish,
                *(group_month_key(g, m) for g, m in group_months),
                # A dissolution changes no counter but must reach rewards (revocations).
                *(
                    group_month_key(g, month_of(local_day(at, tz)))
                    for g, at in plan.dissolved.items()
                ),
            ],
        )
    return outcome


async def _apply_friendships(session: AsyncSession, plan: BatchPlan) -> set[tuple[str, date]]:
    """Keep each pair's first add (SPEC §9: friendships count once); the (user, day) whose
    `friends_added` changed."""
    batch = earliest(plan.friend_adds)
    if not batch:
        return set()
    stored = await friends.lock_and_read(session, batch.keys())
    moved = moves(stored, batch)
    await friends.save(session, moved)
    return friends.touched_days(moved)


async def _apply_membership(
    session: AsyncSession, plan: BatchPlan, tz: ZoneInfo, now: datetime
) -> list[MembershipFlip]:
    """Store the batch's joins and leaves, fold each touched pair's spans again; return the
    month-end flips they cause."""
    if not plan.membership:
        return []
    await membership.add_membership_events(session, plan.membership)
    pairs = pairs_of(plan.membership)
    events = await membership.membership_events(session, pairs)
    spans_before = await membership.take_spans(session, pairs)
    spans_after = {pair: spans_of(events[pair]) for pair in pairs}
    await membership.put_spans(session, spans_after)
    return membership_flips(plan.membership, spans_before, spans_after, now, tz)


def _nonzero(deltas: dict[GroupMonthKey, GroupMonthDelta]) -> dict[GroupMonthKey, GroupMonthDelta]:
    return {key: delta for key, delta in deltas.items() if delta}
