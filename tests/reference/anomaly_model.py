"""An independent model of three anomaly flags (SPEC §14, thresholds as docs/metrics.md states
them), written from the glossary alone over the list of distinct events, sharing no code with
services/scoring. The chaos checker compares the flags scoring published with it.

- message_rate: a user's local day whose busiest clock minute holds ≥ 60 messages;
- points_spike: a user's local day whose points are above 1,000 and above 10 × the user's mean
  daily points over the 28 days before it (days without points count 0);
- late_joins: a group's local month with ≥ 10 joins (a group_created counts as its creator's
  join) in its last 4 local days, making ≥ 50 % of the month's joins.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
MODELLED = ("message_rate", "points_spike", "late_joins")


def _at(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))


def _applies(e: dict[str, Any]) -> bool:
    """Points need a server's word (SPEC §14); everything here else applies as sent."""
    return e["type"] != "points" or e.get("authority", "platform") in ("platform", "import")


def flags(events: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(entity, id, period, flag) for every flag of the three the events earn."""
    out: set[tuple[str, str, str, str]] = set()
    per_minute: Counter[tuple[str, date, datetime]] = Counter()
    points: dict[str, Counter[date]] = defaultdict(Counter)
    joins: dict[tuple[str, str], list[date]] = defaultdict(list)
    for e in events:
        if not _applies(e):
            continue
        local = _at(e).astimezone(TZ)
        day = local.date()
        if e["type"] == "message":
            minute = local.replace(second=0, microsecond=0)
            per_minute[(e["user_id"], day, minute)] += 1
        elif e["type"] == "points":
            points[e["user_id"]][day] += e["delta"]
        elif e["type"] in ("group_join", "group_created"):
            joins[(e["group_id"], f"{day:%Y-%m}")].append(day)
    for (user, day, _), n in per_minute.items():
        if n >= 60:
            out.add(("user", user, day.isoformat(), "message_rate"))
    for user, by_day in points.items():
        for day, total in by_day.items():
            history = sum(by_day.get(day - timedelta(days=k), 0) for k in range(1, 29))
            if total > 1000 and total > 10 * history / 28:
                out.add(("user", user, day.isoformat(), "points_spike"))
    for (group, month), days in joins.items():
        y, m = int(month[:4]), int(month[5:])
        next_month = date(y + (m == 12), m % 12 + 1, 1)
        late = sum(1 for d in days if d >= next_month - timedelta(days=4))
        if late >= 10 and late >= 0.5 * len(days):
            out.add(("group", group, month, "late_joins"))
    return out
