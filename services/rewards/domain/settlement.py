"""When periods settle (SPEC §5): each period of a period-end rule once, after its grace; a
campaign ended early never settles the periods that start after it ended."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.rewards.domain.periods import Period, Window
from services.rewards.domain.rules.base import PeriodEndKind
from services.rewards.domain.rules.registry import AnyRule, period_end


def periods_past_grace(
    rules: Iterable[AnyRule], window: Window, ended_at: datetime | None, now: datetime, tz: ZoneInfo
) -> list[tuple[AnyRule, PeriodEndKind[Any], Period]]:
    """Every (rule, its kind, period) whose settlement may run at `now`, in campaign order."""
    out: list[tuple[AnyRule, PeriodEndKind[Any], Period]] = []
    for rule, kind in period_end(rules):
        for p in window.periods(rule.period, tz):
            if ended_at is not None and p.start >= ended_at:
                continue  # ended early: later periods never happen
            if p.settle_due() <= now:
                out.append((rule, kind, p))
    return out
