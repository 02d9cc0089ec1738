"""Summed scopes (SPEC §9, §10): `user.week.*`, `user.month.*`, `user.year.*`,
`user.campaign.*` and `user.period.*` (= the rule's own period) are a user's day values summed
over that span **up to the evaluated day**, on the rule's days of the week only.

The one definition of those sums, for live thresholds, settlement and the backtest alike: a
day evaluated live and the same day evaluated by a simulation see the same values, so a
threshold fires in the simulation on the day it would have fired live. `user.campaign` and
`user.period` stop at the campaign window's edges; weeks, months and years are calendar spans.
`active` is 1 when some summed day has messages ≥ 1, `active_days` counts such days.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from services.rewards.domain.conditions import is_summed
from services.rewards.domain.periods import Window

PeriodName = str  # a Grain or "campaign"
DayRow = tuple[date, Mapping[str, float]]


def _span_start(scope: str, day: date, period: PeriodName, window_first: date) -> date:
    """The first day of the span `scope` sums for the evaluated `day`."""
    if scope == "user.period":
        scope = f"user.{period}"
    if scope == "user.campaign":
        return window_first
    if scope == "user.day":
        return day
    if scope == "user.week":
        return day - timedelta(days=day.isoweekday() - 1)
    if scope == "user.month":
        return day.replace(day=1)
    if scope == "user.year":
        return date(day.year, 1, 1)
    raise ValueError(f"not a summed scope: {scope}")


@dataclass(frozen=True, slots=True)
class SumPlan:
    """What one rule sums: the summed scopes it reads and their fields, its period, its days of
    the week (None = all) and the campaign's first and last local day."""

    fields: Mapping[str, frozenset[str]]  # summed scope -> fields read there
    period: PeriodName
    days_of_week: frozenset[int] | None
    window_first: date
    window_last: date

    @classmethod
    def of(
        cls,
        metrics: Iterable[str],
        period: PeriodName,
        days_of_week: Iterable[int] | None,
        window: Window,
        tz: ZoneInfo,
    ) -> SumPlan:
        first, last = window.days(tz)
        by_scope: dict[str, set[str]] = {}
        for m in metrics:
            scope, _, name = m.rpartition(".")
            if is_summed(m):
                by_scope.setdefault(scope, set()).add(name)
        return cls(
            {s: frozenset(f) for s, f in by_scope.items()},
            period,
            frozenset(days_of_week) if days_of_week else None,
            first,
            last,
        )

    def counts(self, day: date) -> bool:
        """Whether `day`'s values enter the sums (and the day is evaluated)."""
        return self.days_of_week is None or day.isoweekday() in self.days_of_week

    def span(self, scope: str, day: date) -> tuple[date, date]:
        """The days `scope` sums for the evaluated `day`, clipped to the window where the
        scope is the campaign's or the rule's period."""
        start = _span_start(scope, day, self.period, self.window_first)
        if scope in ("user.campaign", "user.period"):
            return max(start, self.window_first), min(day, self.window_last)
        return start, day

    def earliest(self, day: date) -> date:
        """The first day any summed scope needs for evaluating `day`."""
        return min((self.span(s, day)[0] for s in self.fields), default=day)

    def source_fields(self) -> frozenset[str]:
        """The day fields the sums read (`active`, `active_days` come from `messages`)."""
        out: set[str] = set()
        for names in self.fields.values():
            for n in names:
                out.add("messages" if n in ("active", "active_days") else n)
        return frozenset(out)


def _add(sums: dict[str, float], names: frozenset[str], values: Mapping[str, float]) -> None:
    for n in names:
        if n == "active_days" or n == "active":
            if values.get("messages", 0.0) >= 1:
                sums[n] = 1.0 if n == "active" else sums.get(n, 0.0) + 1.0
        else:
            sums[n] = sums.get(n, 0.0) + float(values.get(n, 0.0))


def running_values(
    plan: SumPlan, rows: Sequence[DayRow], evaluate: Iterable[date] | None = None
) -> Iterator[tuple[date, dict[str, float]]]:
    """For each evaluated day of one user (a day with a row, counted by the plan, and in
    `evaluate` when given), the summed scopes' values up to and including that day, with the
    day's own values as `user.day.*`. `rows` are the user's days in order."""
    wanted = None if evaluate is None else set(evaluate)
    state: dict[str, tuple[date, dict[str, float]]] = {}  # scope -> (span start, sums)
    for day, values in rows:
        if not plan.counts(day):
            continue
        for scope, names in plan.fields.items():
            start, end = plan.span(scope, day)
            if end < day:  # past the window's end: nothing more counts
                continue
            held = state.get(scope)
            if held is None or held[0] != start:
                held = state[scope] = (start, {})
            if day >= start:
                _add(held[1], names, values)
        if wanted is not None and day not in wanted:
            continue
        out = {f"user.day.{k}": float(v) for k, v in values.items()}
        for scope, names in plan.fields.items():
            held = state.get(scope)
            sums = held[1] if held is not None and held[0] == plan.span(scope, day)[0] else {}
            for n in names:
                out[f"{scope}.{n}"] = sums.get(n, 0.0)
        yield day, out


def period_sums(plan: SumPlan, rows: Sequence[DayRow], last_day: date) -> dict[str, float]:
    """The summed scopes' values as of `last_day` (a period's end, at settlement), whether or
    not the user has a row that day."""
    out: dict[str, float] = {}
    for scope, names in plan.fields.items():
        start, end = plan.span(scope, last_day)
        sums: dict[str, float] = {}
        for day, values in rows:
            if start <= day <= end and plan.counts(day):
                _add(sums, names, values)
        for n in names:
            out[f"{scope}.{n}"] = sums.get(n, 0.0)
    return out
