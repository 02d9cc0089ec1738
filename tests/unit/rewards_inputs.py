"""Rule inputs held in memory: what rewards' store would answer a campaign's rules
(domain/rules/base.py `RuleInputs`), so that rule kinds are tested without a database."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.rewards.domain import draws
from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.groups import GroupMonth
from services.rewards.domain.periods import Grain, Period, Window
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

    async def user_days_between(self, first: date, last: date) -> dict[UserKey, Values]:
        return {k: dict(v) for k, v in self.user_days.items() if first <= k[1] <= last}

    async def with_scopes(
        self, grain: Grain, base: Mapping[UserKey, Mapping[str, float]], metrics: Set[str]
    ) -> dict[UserKey, Values]:
        first, last = self.window.days(self.tz)
        out: dict[UserKey, Values] = {}
        for (u, d), values in base.items():
            month = d.replace(day=1)
            prev = (month - timedelta(days=1)).replace(day=1)
            campaign: dict[str, float] = {}
            for (user, day), v in self.user_days.items():
                if user == u and first <= day <= last:
                    for k, n in v.items():
                        campaign[k] = campaign.get(k, 0.0) + n
            out[(u, d)] = (
                {f"user.{grain}.{k}": v for k, v in values.items()}
                | {f"user.month.{k}": v for k, v in self.user_months.get((u, month), {}).items()}
                | {
                    f"user.prev_month.{k}": v
                    for k, v in self.user_months.get((u, prev), {}).items()
                }
                | {f"user.campaign.{k}": v for k, v in campaign.items()}
            )
        return out

    async def draw(
        self, rule_id: str, period: Period, entries: list[str], winners: int, repeat: bool
    ) -> list[str]:
        self.drawn.append((rule_id, period.label, entries))
        return draws.draw(self.seed, entries, winners, repeat)
