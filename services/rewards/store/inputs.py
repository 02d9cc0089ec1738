"""The stored metric values a campaign's rules read (domain/rules/base.py `RuleInputs`), from
rewards' own tables — the same answers for real-time thresholds, settlement and simulation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.conditions import MEMBER_OF_ENROLLED_GROUP, NEW_FRIENDS_METRIC
from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.groups import GroupMonth
from services.rewards.domain.periods import Period, Window, period_of_label
from services.rewards.domain.rules.base import Values, fields_in
from services.rewards.store import snapshots
from services.rewards.store.campaigns import enrolled_groups
from services.rewards.store.exclusions import exclusions_of
from services.rewards.store.tickets import ledger_tickets_of

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
    _members: dict[date, frozenset[str]] = field(default_factory=dict)

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

    async def user_series(
        self, first: date, last: date, fields: Set[str], users: Sequence[str] | None = None
    ) -> AsyncIterator[tuple[str, list[tuple[date, dict[str, float]]]]]:
        async for user_id, rows in snapshots.user_day_series(
            self.session, first, last, fields, users
        ):
            yield user_id, rows

    async def user_context(
        self, refs: Iterable[tuple[str, date]], metrics: Set[str]
    ) -> dict[tuple[str, date], Values]:
        refs = list(refs)
        out: dict[tuple[str, date], Values] = {r: {} for r in refs}
        prev_fields = fields_in(metrics, "user.prev_month")
        if prev_fields and refs:
            prev = await snapshots.user_months_of(
                self.session, ((u, _prev_month(d.replace(day=1))) for u, d in refs), prev_fields
            )
            for u, d in refs:
                found = prev.get((u, _prev_month(d.replace(day=1))), {})
                out[(u, d)] |= {f"user.prev_month.{f}": found.get(f, 0.0) for f in prev_fields}
        if MEMBER_OF_ENROLLED_GROUP in metrics and refs:
            for u, d in refs:
                members = await self._enrolled_members(d.replace(day=1))
                out[(u, d)][MEMBER_OF_ENROLLED_GROUP] = 1.0 if u in members else 0.0
        if NEW_FRIENDS_METRIC in metrics and refs:
            first, last = self.window.days(self.tz)
            counts = await snapshots.new_friends(self.session, refs, first, last)
            for ref in refs:
                out[ref][NEW_FRIENDS_METRIC] = float(counts.get(ref, 0))
        return out

    async def _enrolled_members(self, month: date) -> frozenset[str]:
        """Members at the month's end of the campaign's enrolled groups (every group when the
        campaign does not require enrollment: none is enrolled then)."""
        if month not in self._members:
            enrolled = await enrolled_groups(self.session, self.campaign_id)
            self._members[month] = frozenset(
                await snapshots.members_of(self.session, month, enrolled)
            )
        return self._members[month]

    async def ledger_tickets(self, campaign: str, rule_id: str, period: Period) -> dict[str, int]:
        found = await ledger_tickets_of(self.session, campaign, rule_id)
        out: dict[str, int] = {}
        for user_id, label, units in found:
            try:
                p = period_of_label(label, self.tz)
            except ValueError:
                continue
            if period.first_day <= p.first_day and p.last_day <= period.last_day:
                out[user_id] = out.get(user_id, 0) + units
        return out

    async def draw(
        self, rule_id: str, period: Period, entries: list[str], winners: int, repeat: bool
    ) -> list[str]:
        if self.drawer is None:
            raise RuntimeError(f"rule '{rule_id}' draws, but these inputs have no draws")
        return await self.drawer(rule_id, period, entries, winners, repeat)
