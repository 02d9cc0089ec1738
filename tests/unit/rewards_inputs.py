"""Rule inputs held in memory: what rewards' store would answer a campaign's rules
(domain/rules/base.py `RuleInputs`), so that rule kinds are tested without a database."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.rewards.domain import draws
from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.groups import GroupMonth
from services.rewards.domain.periods import Period, Window
from services.rewards.domain.rules.base import UserKey, Values

TZ = ZoneInfo("Asia/Shanghai")
OCT_NOV = Window(datetime(2026, 10, 1, tzinfo=TZ), datetime(2026, 12, 1, tzinfo=TZ))


def group(
    gid: str,
    province: str = "BJ",
    members: tuple[str, ...] = (),
    month: date | None = None,
    **counters: float,
) -> GroupMonth:
    """A group standing since January 2026, zeros unless told."""
    base = {
        "members": float(len(members)),
        "active_members": 0.0,
        "activity_points": 0.0,
        "points_growth": 0.0,
        "bonus_points": 0.0,
        "group_messages": 0.0,
    }
    return GroupMonth(
        gid,
        f"owner-{gid}",
        province,
        datetime(2026, 1, 1, tzinfo=UTC),
        None,
        members,
        base | counters,
        month,
    )


@dataclass
class InMemoryInputs:
    window: Window = OCT_NOV
    tz: ZoneInfo = TZ
    group_months: list[GroupMonth] = field(default_factory=list)  # month None: any month
    user_days: dict[UserKey, dict[str, float]] = field(default_factory=dict)
    user_months: dict[UserKey, dict[str, float]] = field(default_factory=dict)
    enrolled_groups: set[str] | None = None
    excluded: Exclusions = field(default_factory=Exclusions)
    active: set[str] = field(default_factory=set)  # active users, in every month
    seed: str = "seed"
    asked_members_of: list[list[str]] = field(default_factory=list)  # what `groups` was asked
    drawn: list[tuple[str, str, list[str]]] = field(default_factory=list)  # rule, period, entries
    # (campaign, rule, period label) -> user -> tickets granted there (SPEC §10)
    tickets: dict[tuple[str, str, str], dict[str, int]] = field(default_factory=dict)

    async def enrolled(self) -> set[str] | None:
        return self.enrolled_groups

    async def exclusions(self) -> Exclusions:
        return self.excluded

    async def groups(
        self, period: Period, *, members: bool = True, only: Sequence[str] | None = None
    ) -> list[GroupMonth]:
        out = [
            g
            for g in self.group_months
            if g.month in (None, period.first_day) and (only is None or g.group_id in only)
        ]
        if members:
            self.asked_members_of.append([g.group_id for g in out])
            return out
        return [dataclasses.replace(g, member_ids=()) for g in out]

    async def active_users(self, period: Period, group_ids: Iterable[str]) -> set[str]:
        ids = set(group_ids)
        return {
            u
            for g in self.group_months
            if g.group_id in ids
            for u in g.member_ids
            if u in self.active
        }

    async def user_rows(
        self, period: Period, fields: Iterable[str] | None = None
    ) -> dict[str, dict[str, float]]:
        source = self.user_days if period.grain == "day" else self.user_months
        rows = {u: v for (u, d), v in source.items() if d == period.first_day}
        if fields is None:
            return rows
        names = set(fields)
        return {u: {f: v.get(f, 0.0) for f in names} for u, v in rows.items()}

    async def user_series(
        self, first: date, last: date, fields: Set[str], users: Sequence[str] | None = None
    ) -> AsyncIterator[tuple[str, list[tuple[date, dict[str, float]]]]]:
        by_user: dict[str, list[tuple[date, dict[str, float]]]] = {}
        for (u, d), v in sorted(self.user_days.items()):
            if first <= d <= last and (users is None or u in users):
                by_user.setdefault(u, []).append((d, {f: v.get(f, 0.0) for f in fields}))
        for u in sorted(by_user):
            yield u, by_user[u]

    async def user_context(
        self, refs: Iterable[tuple[str, date]], metrics: Set[str]
    ) -> dict[tuple[str, date], Values]:
        out: dict[tuple[str, date], Values] = {}
        for u, d in refs:
            prev = (d.replace(day=1) - timedelta(days=1)).replace(day=1)
            values = {
                m: self.user_months.get((u, prev), {}).get(m.removeprefix("user.prev_month."), 0.0)
                for m in metrics
                if m.startswith("user.prev_month.")
            }
            if "user.member_of_enrolled_group" in metrics:
                members = {
                    m
                    for g in self.group_months
                    if g.month in (None, d.replace(day=1))
                    and g.group_id in (self.enrolled_groups or set())
                    for m in g.member_ids
                }
                values["user.member_of_enrolled_group"] = 1.0 if u in members else 0.0
            out[(u, d)] = values
        return out

    async def ledger_tickets(self, campaign: str, rule_id: str, period: Period) -> dict[str, int]:
        return dict(self.tickets.get((campaign, rule_id, period.label), {}))

    async def draw(
        self, rule_id: str, period: Period, entries: list[str], winners: int, repeat: bool
    ) -> list[str]:
        self.drawn.append((rule_id, period.label, entries))
        return draws.draw(self.seed, entries, winners, repeat)
