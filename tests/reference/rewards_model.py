"""An independent computation of the six SPEC §1 campaigns (as SPEC §10 corrects them) and
of the rule language's constructs, from the scoring reference.

Written from the spec, not from services/rewards: what each campaign should grant given the
event list (via tests/reference/scoring_model.py), the enrolled groups and the draw seeds.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from tests.reference.scoring_model import TZ, Expected, month_end, month_key


def standing(exp: Expected, group_id: str, month: str) -> bool:
    info = exp.groups.get(group_id, {})
    end = month_end(month)
    if "created_at" not in info or info["created_at"] >= end:
        return False
    return "dissolved_at" not in info or info["dissolved_at"] >= end


def first_mobile_message_users(
    events: list[dict[str, Any]], start: datetime, end: datetime
) -> set[str]:
    """'Play and get gifts': users with a mobile-client message within the window."""
    return {
        e["user_id"]
        for e in events
        if e["type"] == "message"
        and e["client"] == "mobile"
        and start <= datetime.fromisoformat(e["occurred_at"]) < end
    }


def invited_two_friends(exp: Expected, first: date, last: date) -> set[str]:
    """'Invite friends' (SPEC §10): users who, by one of their days in the window, made >= 2
    friends in the window whose own first_seen lies in the window and not after that day."""
    out: set[str] = set()
    days_of: dict[str, list[date]] = {}
    for u, d in exp.user_day:
        if first <= d <= last:
            days_of.setdefault(u, []).append(d)
    for u, days in days_of.items():
        for e in sorted(days):
            made = {
                f
                for (who, d), ids in exp.friend_ids.items()
                if who == u and first <= d <= e
                for f in ids
            }
            new = [f for f in made if f in exp.first_seen and first <= exp.first_seen[f] <= e]
            if len(new) >= 2:
                out.add(u)
                break
    return out


def vitality(row: dict[str, int]) -> int:
    return row["points_growth"] + row["activity_points"] + row["bonus_points"]


def top_groups(exp: Expected, month: str, enrolled: set[str], top: int) -> list[str]:
    """'My Fetion, my group': per province, the top enrolled groups (SPEC §4 order)."""
    by_province: dict[str, list[tuple[int, int, str]]] = {}
    for (g, m), row in exp.group_month.items():
        if m != month or g not in enrolled or not standing(exp, g, month):
            continue
        by_province.setdefault(exp.groups[g]["province"], []).append(
            (-vitality(row), -row["active_members"], g)
        )
    return sorted(g for rows in by_province.values() for _, _, g in sorted(rows)[:top])


def tribe_chief_credit(
    exp: Expected, month: str, enrolled: set[str], per_member: int, cap: int
) -> dict[str, int]:
    """'Tribe chief': owner credit by group, for groups of >= 25 members, >= 80% active."""
    considered = [
        g for (g, m) in exp.group_month if m == month and g in enrolled and standing(exp, g, month)
    ]
    in_groups: Counter[str] = Counter(u for g in considered for u in exp.members[(g, month)])
    active = {u for (u, m), row in exp.user_month.items() if m == month and row["messages"] >= 1}
    out: dict[str, int] = {}
    for g in considered:
        row = exp.group_month[(g, month)]
        if row["members"] < 25 or row["active_members"] < 0.8 * row["members"]:
            continue
        effective = sum(1 for u in exp.members[(g, month)] if u in active and in_groups[u] == 1)
        if effective:
            out[g] = min(effective * per_member, cap)
    return out


def revoked_for_dissolution(exp: Expected, group_id: str, fulfil_by: date) -> bool:
    at = exp.groups.get(group_id, {}).get("dissolved_at")
    return at is not None and at.astimezone(TZ).date() < fulfil_by


def checkin_entries(exp: Expected, day: date, enrolled: set[str]) -> list[str]:
    """Daily check-in draw entrants: members (at the end of the day's month) of an enrolled
    group, checked in, and 4 online points or last month's growth > 50."""
    prev = month_key(day.replace(day=1) - timedelta(days=1))
    members = {
        u for (g, m), us in exp.members.items() if m == month_key(day) and g in enrolled for u in us
    }
    out = []
    for (u, d), row in exp.user_day.items():
        if d != day or row["checkins"] < 1 or u not in members:
            continue
        growth = exp.user_month.get((u, prev), {}).get("points_delta", 0)
        if row["online_points"] >= 4 or growth > 50:
            out.append(u)
    return sorted(out)


def friend_tickets(exp: Expected, month: str, fetion_tickets: Iterable[str] = ()) -> list[str]:
    """New-friend draw: one ticket per friend made in the month (a pair counts once, SPEC §9),
    and one per "My Fetion" member ticket of that month, numbered per user."""
    count: Counter[str] = Counter()
    for (u, m), row in exp.user_month.items():
        if m == month:
            count[u] += row["friends_added"]
    for u in fetion_tickets:
        count[u] += 1
    return sorted(f"{u}#{n}" for u, k in count.items() for n in range(1, k + 1))


def fetion_member_tickets(exp: Expected, month: str, winners: list[str]) -> set[str]:
    """'My Fetion': every member (at the month's end) of a winning group gets one ticket."""
    return {u for g in winners for u in exp.members.get((g, month), [])}


def draw(seed: str, entries: list[str], winners: int, repeat: bool) -> list[str]:
    """Smallest HMAC-SHA256(seed, entry) first; without repeats, one win per user."""
    ranked = sorted(
        entries, key=lambda e: hmac.new(seed.encode(), e.encode(), hashlib.sha256).hexdigest()
    )
    if repeat:
        return ranked[:winners]
    out, users = [], set()
    for e in ranked:
        if e.split("#")[0] not in users:
            users.add(e.split("#")[0])
            out.append(e)
    return out[:winners]


def weekend_boost(
    exp: Expected, first: date, last: date, threshold: int = 30
) -> dict[tuple[str, str], tuple[date, int]]:
    """'Weekend chat boost' (SPEC §10): per (user, ISO week), the first Saturday or Sunday in
    [first, last], in day order, on which the week's Saturday and Sunday mobile messages up to
    and including that day reach `threshold` — with that total. Only days the user has values
    for are looked at (a day without any is never evaluated)."""
    totals: dict[tuple[str, str], int] = {}
    out: dict[tuple[str, str], tuple[date, int]] = {}
    for (u, d), row in sorted(exp.user_day.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if not first <= d <= last or d.isoweekday() not in (6, 7):
            continue
        year, week, _ = d.isocalendar()
        key = (u, f"{year}-W{week:02d}")
        totals[key] = totals.get(key, 0) + row["messages_mobile"]
        if key not in out and totals[key] >= threshold:
            out[key] = (d, totals[key])
    return out
