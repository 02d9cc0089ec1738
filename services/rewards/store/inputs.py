"""The stored metric values a campaign's rules read (domain/rules/base.py `RuleInputs`), from
rewards' own tables — the same answers for real-time thresholds, settlement and simulation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.groups import GroupMonth
from services.rewards.domain.periods import Grain, Period, Window
from services.rewards.domain.rules.base import UserKey, Values, fields_in
from services.rewards.store import snapshots
from services.rewards.store.campaigns import enrolled_groups
from services.rewards.store.exclusions import exclusions_of

# (rule id, period, entries, winners, repeat winners) -> the winning entries
DrawFn = Callable[[str, Period, list[str], int, bool], Awaitable[list[str]]]


def _prev_month(month_first: date) -> date:
    return (month_first - timedelta(days=1)).replace(day=1)


def _prefixed(scope: str, values: Mapping[str, float]) -> Values:
    return {f"{scope}.{k}": v for k, v in values.items()}


@dataclass(slots=True)
class StoredInputs:
    """One campaign's rule inputs, read in `session` (whose transaction the caller owns)."""

    session: AsyncSession
    campaign_id: str
    window: Window
    enrollment_required: bool
    tz: ZoneInfo
    drawer: DrawFn | None = None  # None: rules that draw are not evaluated here
    _exclusions: Exclusions | None = None
    _day_ranges: dict[tuple[date, date], dict[UserKey, Values]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        session: AsyncSession,
        campaign_id: str,
        definition: CampaignDefinition,
        tz: ZoneInfo,
        drawer: DrawFn | None = None,
    ) -> StoredInputs:
        return cls(
            session, campaign_id, definition.window, definition.enrollment_required, tz, drawer
        )

    async def enrolled(self) -> set[str] | None:
        if not self.enrollment_required:
            return None
        return await enrolled_groups(self.session, self.campaign_id)

    async def exclusions(self) -> Exclusions:
        if self._exclusions is None:  # read once: one batch or one settlement
            self._exclusions = await exclusions_of(self.session, self.campaign_id)
        return self._exclusions

    async def groups(
        self, period: Period, *, members: bool = True, only: Sequence[str] | None = None
    ) -> list[GroupMonth]:
        return await snapshots.group_months_in(self.session, period.first_day, members, only)

    async def active_users(self, period: Period, group_ids: Iterable[str]) -> set[str]:
        return await snapshots.active_members(self.session, period.first_day, group_ids)

    async def user_rows(
        self, period: Period, fields: Iterable[str] | None = None
    ) -> dict[str, dict[str, float]]:
        load = snapshots.user_days_on if period.grain == "day" else snapshots.user_months_in
        return await load(self.session, period.first_day, fields)

    async def user_days_between(self, first: date, last: date) -> dict[UserKey, Values]:
        # Read once per range: a simulation's day thresholds all replay the same days.
        if (first, last) not in self._day_ranges:
            rows = await snapshots.user_days_between(self.session, first, last)
            self._day_ranges[(first, last)] = {(u, d): v for u, d, v in rows}
        return self._day_ranges[(first, last)]

    async def with_scopes(
        self, grain: Grain, base: Mapping[UserKey, Mapping[str, float]], metrics: Set[str]
    ) -> dict[UserKey, Values]:
        scopes = {m.rpartition(".")[0] for m in metrics}
        out = {key: _prefixed(f"user.{grain}", vals) for key, vals in base.items()}
        if grain == "day" and "user.month" in scopes:
            months = await snapshots.user_months_of(
                self.session, ((u, d.replace(day=1)) for u, d in base)
            )
            for (u, d), vals in out.items():
                vals.update(_prefixed("user.month", months.get((u, d.replace(day=1)), {})))
        if "user.prev_month" in scopes:
            prev = await snapshots.user_months_of(
                self.session,
                ((u, _prev_month(d.replace(day=1))) for u, d in base),
                fields_in(metrics, "user.prev_month"),
            )
            for (u, d), vals in out.items():
                vals.update(
                    _prefixed("user.prev_month", prev.get((u, _prev_month(d.replace(day=1))), {}))
                )
        if "user.campaign" in scopes:
            first, last = self.window.days(self.tz)
            sums = await snapshots.window_sums(
                self.session, (u for u, _ in base), first, last, fields_in(metrics, "user.campaign")
            )
            for (u, _), vals in out.items():
                vals.update(_prefixed("user.campaign", sums.get(u, {})))
        return out

    async def draw(
        self, rule_id: str, period: Period, entries: list[str], winners: int, repeat: bool
    ) -> list[str]:
        if self.drawer is None:
            raise RuntimeError(f"rule '{rule_id}' draws, but these inputs have no draws")
        return await self.drawer(rule_id, period, entries, winners, repeat)
