"""An independent model of SPEC §12's lifecycle stages and business KPIs, written from the spec
and docs/metrics.md ("Lifecycle", "Business KPIs") alone: plain Python over the list of distinct
events and the §4 counters of tests/reference/scoring_model.py, sharing no code with
services/scoring. Tests compare the service's user months and `GET /v1/stats/...` with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from tests.reference.scoring_model import Expected, day_of, month_key, ts

CLIENTS = ("all", "pc", "mobile", "sms")
UNKNOWN = "unknown"
COUNTED = ("active_users", "new_users", "messages", "online_seconds", "sessions", "checkins")
STAGE_COUNTS = ("returning_users", "resurrecting_users", "dormant_users", "loyal_users")
PER_USER = ("new_users", "checkins", *STAGE_COUNTS)  # only in `all`: null in a client's item

Lifecycle = tuple[str | None, bool]  # (stage, loyal)
Counters = dict[str, int]


def next_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:])
    return f"{y + 1:04d}-01" if m == 12 else f"{y:04d}-{m + 1:02d}"


def previous_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:])
    return f"{y - 1:04d}-12" if m == 1 else f"{y:04d}-{m - 1:02d}"


def days_in(month: str) -> list[date]:
    first = date(int(month[:4]), int(month[5:]), 1)
    return [
        first + timedelta(days=i)
        for i in range(40)
        if month_key(first + timedelta(days=i)) == month
    ]


@dataclass
class KpiExpected:
    lifecycle: dict[tuple[str, str], Lifecycle] = field(default_factory=dict)  # (user, month)
    province: dict[tuple[str, str], str] = field(default_factory=dict)  # (user, month)
    day: dict[tuple[date, str, str], Counters] = field(default_factory=dict)  # (day, prov, client)
    month: dict[tuple[str, str, str], Counters] = field(default_factory=dict)


def is_active(exp: Expected, user: str, month: str) -> bool:
    """SPEC §4: ≥ 1 pc/mobile message in the month."""
    return exp.user_month.get((user, month), {}).get("messages", 0) >= 1


def lifecycle_of(exp: Expected, user: str, month: str) -> Lifecycle:
    """PostHog's stages (SPEC §12, docs/metrics.md#lifecycle) for one user and month."""
    first = month_key(exp.first_seen[user]) if user in exp.first_seen else None
    active = is_active(exp, user, month)
    last = is_active(exp, user, previous_month(month))
    before_last = is_active(exp, user, previous_month(previous_month(month)))
    loyal = active and last and before_last
    if first is None or first > month:
        return None, loyal
    if first == month:
        return "new", loyal
    if active:
        return ("returning" if last else "resurrecting"), loyal
    return ("dormant" if last else None), loyal


def lifecycles(exp: Expected) -> dict[tuple[str, str], Lifecycle]:
    """Every user month with a stage: from first_seen's month to the month after the user's
    last active month (that one `dormant`)."""
    out: dict[tuple[str, str], Lifecycle] = {}
    for user, first_day in exp.first_seen.items():
        active_months = [m for (u, m) in exp.user_month if u == user and is_active(exp, u, m)]
        last = max([month_key(first_day), *(next_month(m) for m in active_months)])
        month = month_key(first_day)
        while month <= last:
            stage, loyal = lifecycle_of(exp, user, month)
            if stage is not None or loyal:
                out[(user, month)] = (stage, loyal)
            month = next_month(month)
    return out


def _counted(events: Iterable[dict[str, Any]], exp: Expected) -> list[dict[str, Any]]:
    unique: dict[str, dict[str, Any]] = {}
    for e in events:
        unique.setdefault(e["event_id"].lower(), e)
    return [e for e in unique.values() if e["event_id"] not in exp.refused]


def provinces(events: list[dict[str, Any]], exp: Expected) -> dict[tuple[str, str], str]:
    """A user's province per month: that of the group they sent most pc/mobile messages to
    that month (ties: smallest group id); `unknown` without group messages or while that
    group has no `group_created`."""
    sent: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in events:
        if e["type"] == "message" and e["client"] != "sms" and e.get("group_id"):
            month = month_key(day_of(ts(e["occurred_at"])))
            sent[(e["user_id"], month)][e["group_id"]] += 1
    out = {}
    for key, per_group in sent.items():
        top = min(per_group, key=lambda g: (-per_group[g], g))
        out[key] = exp.groups.get(top, {}).get("province", UNKNOWN)
    return out


def sessions(events: list[dict[str, Any]]) -> dict[tuple[str, date], dict[str, int]]:
    """Sessions counted per (user, local day it began) by the client of its first login: both
    ends arrived and the latest logout not before the earliest login."""
    logins: dict[tuple[str, str], list[tuple[datetime, str, str]]] = defaultdict(list)
    logouts: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for e in events:
        if e["type"] == "login":
            logins[(e["user_id"], e["session_id"])].append(
                (ts(e["occurred_at"]), e["event_id"], e["client"])
            )
        elif e["type"] == "logout":
            logouts[(e["user_id"], e["session_id"])].append(ts(e["occurred_at"]))
    out: dict[tuple[str, date], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, ins in logins.items():
        if key not in logouts:
            continue
        start, _, client = min(ins)
        if max(logouts[key]) >= start:
            out[(key[0], day_of(start))][client] += 1
    return out


def _contribution(
    row: dict[str, int], started: dict[str, int], new: bool, active: bool
) -> dict[str, Counters]:
    """One user's share of a period's figures, per client."""
    pc_messages = row.get("messages", 0) - row.get("messages_mobile", 0)
    mobile, sms = row.get("messages_mobile", 0), row.get("messages_sms", 0)
    online_pc, online_mobile = row.get("online_seconds_pc", 0), row.get("online_seconds_mobile", 0)
    blank = dict.fromkeys(COUNTED, 0)
    return {
        "all": blank
        | {
            "active_users": int(active),
            "new_users": int(new),
            "messages": pc_messages + mobile + sms,
            "online_seconds": online_pc + online_mobile,
            "sessions": sum(started.values()),
            "checkins": row.get("checkins", 0),
        },
        "pc": blank
        | {
            "active_users": int(pc_messages >= 1),
            "messages": pc_messages,
            "online_seconds": online_pc,
            "sessions": started.get("pc", 0),
        },
        "mobile": blank
        | {
            "active_users": int(mobile >= 1),
            "messages": mobile,
            "online_seconds": online_mobile,
            "sessions": started.get("mobile", 0),
        },
        "sms": blank
        | {"active_users": int(sms >= 1), "messages": sms, "sessions": started.get("sms", 0)},
    }


def _add(table: dict[Any, Counters], key: tuple[Any, ...], values: Counters) -> None:
    if not any(values.values()):
        return
    row = table.setdefault(key, defaultdict(int))
    for name, value in values.items():
        row[name] += value


def compute(events: list[dict[str, Any]], exp: Expected) -> KpiExpected:
    """Stages of every user month, and the KPI rows per (day | month, province, client),
    with `exp` = scoring_model.compute(events, ...) (SPEC §4's counters)."""
    counted = _counted(events, exp)
    out = KpiExpected(lifecycle=lifecycles(exp), province=provinces(counted, exp))
    started = sessions(counted)
    # user_day of the §4 model lacks messages_mobile in the month: take days.
    users_days: dict[tuple[str, str], list[date]] = defaultdict(list)
    keys = set(exp.user_day) | set(started)
    keys |= {(u, d) for u, d in exp.first_seen.items()}
    for user, day in keys:
        users_days[(user, month_key(day))].append(day)
    months = {m for (_, m) in users_days} | {m for (_, m) in out.lifecycle}
    for user, month in {*users_days, *out.lifecycle}:
        province = out.province.get((user, month), UNKNOWN)
        month_row: dict[str, int] = defaultdict(int)
        month_started: dict[str, int] = defaultdict(int)
        for day in users_days.get((user, month), []):
            row = exp.user_day.get((user, day), {})
            day_started = started.get((user, day), {})
            for name, value in row.items():
                month_row[name] += value
            for client, n in day_started.items():
                month_started[client] += n
            new = exp.first_seen.get(user) == day
            active = row.get("messages", 0) >= 1
            for client, values in _contribution(row, day_started, new, active).items():
                _add(out.day, (day, province, client), values)
        stage, loyal = out.lifecycle.get((user, month), (None, False))
        shares = _contribution(
            month_row, month_started, stage == "new", is_active(exp, user, month)
        )
        shares["all"] |= {
            "returning_users": int(stage == "returning"),
            "resurrecting_users": int(stage == "resurrecting"),
            "dormant_users": int(stage == "dormant"),
            "loyal_users": int(loyal),
        }
        for client, values in shares.items():
            _add(out.month, (month, province, client), values)
    assert months  # something happened
    return out


def _slices(
    rows: dict[tuple[Any, str, str], Counters], period: Any, by: set[str]
) -> dict[tuple[str | None, str | None], Counters]:
    out: dict[tuple[str | None, str | None], Counters] = {}
    for (p, province, client), values in rows.items():
        if p != period or ("client" not in by and client != "all"):
            continue
        key = (province if "province" in by else None, client if "client" in by else None)
        row = out.setdefault(key, defaultdict(int))
        for name, value in values.items():
            row[name] += value
    return out


def _item(province: str | None, client: str | None, sums: Counters) -> dict[str, Any]:
    item: dict[str, Any] = {"province": province, "client": client}
    for name, value in sums.items():
        if name == "online_seconds":
            item["online_hours"] = round(value / 3600, 3)
        elif client not in (None, "all") and name in PER_USER:
            item[name] = None
        else:
            item[name] = value
    return item


def day_items(kpi: KpiExpected, day: date, by: set[str]) -> list[dict[str, Any]]:
    """What `GET /v1/stats/day/{day}?by=...` should answer (slices with something in them)."""
    month = _slices(kpi.month, month_key(day), by)
    items = []
    for key, sums in sorted(_slices(kpi.day, day, by).items(), key=_order):
        sums = {n: sums.get(n, 0) for n in COUNTED}
        mau = month.get(key, {}).get("active_users", 0)
        dau_mau = None if mau == 0 else sums["active_users"] / mau
        items.append(_item(*key, sums) | {"dau_mau": dau_mau})
    return items


def month_items(kpi: KpiExpected, month: str, by: set[str], today: date) -> list[dict[str, Any]]:
    """What `GET /v1/stats/month/{month}?by=...` should answer: with `mau`, `dau_mean` (Σ daily
    active users over the days counted — the month's, up to today in the current month) and
    `dau_mau` = dau_mean / mau."""
    counted_days = [d for d in days_in(month) if d <= today]
    daily = [_slices(kpi.day, d, by) for d in counted_days]
    items = []
    for key, sums in sorted(_slices(kpi.month, month, by).items(), key=_order):
        sums = {n: sums.get(n, 0) for n in (*COUNTED, *STAGE_COUNTS)}
        dau_mean = sum(day.get(key, {}).get("active_users", 0) for day in daily) / max(
            len(counted_days), 1
        )
        mau = sums["active_users"]
        items.append(
            _item(*key, sums)
            | {
                "mau": mau,
                "dau_mean": round(dau_mean, 3),
                "dau_mau": None if mau == 0 else dau_mean / mau,
            }
        )
    return items


def _order(entry: tuple[tuple[str | None, str | None], Any]) -> tuple[str, str]:
    province, client = entry[0]
    return (province or "", client or "")
