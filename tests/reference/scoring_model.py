"""An independent model of SPEC §4, written from the spec alone: plain Python over the list of
distinct events, sharing no code with services/scoring. Tests compare the service against it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def day_of(at: datetime) -> date:
    return at.astimezone(TZ).date()


def month_key(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def month_end(month: str) -> datetime:
    y, m = int(month[:4]), int(month[5:])
    y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return datetime(y, m, 1, tzinfo=TZ)


def seconds_between(a: datetime, b: datetime) -> int:
    """Whole seconds from a to b (b >= a), floored, in integer microseconds."""
    delta = b - a
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) // 10**6


@dataclass
class Expected:
    user_day: dict[tuple[str, date], dict[str, int]] = field(default_factory=dict)
    user_month: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    group_month: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # as of month end
    first_seen: dict[str, date] = field(default_factory=dict)  # local day of the earliest event
    seen_groups: set[str] = field(default_factory=set)  # every group an event named
    refused: dict[str, str] = field(default_factory=dict)  # event id → reason (SPEC §14)
    # the friends each user made each day: first adds of their pairs (SPEC §9)
    friend_ids: dict[tuple[str, date], list[str]] = field(default_factory=dict)


SERVER = ("platform", "import")


def refusal(e: dict[str, Any], groups: dict[str, dict[str, Any]]) -> str | None:
    """Why SPEC §14 refuses this event given the groups so far (None: it applies). Who vouched
    is `authority` ("platform" when absent). Points, bonus cards, creations and transfers are
    a server's word; a relay may not dissolve, a user only their own group; a group is created
    once (the first processed)."""
    authority = e.get("authority", "platform")
    kind = e["type"]
    server_only = ("points", "bonus_card", "group_created", "group_owner_changed")
    if kind in server_only and authority not in SERVER:
        return "authority_not_allowed"
    if kind == "group_created" and "created_at" in groups.get(e["group_id"], {}):
        return "group_already_created"
    if kind == "group_dissolved":
        if authority == "relay":
            return "authority_not_allowed"
        if authority == "user" and groups.get(e["group_id"], {}).get("owner") != e["user_id"]:
            return "not_group_owner"
    return None


def compute(events: list[dict[str, Any]], months: list[str]) -> Expected:
    """Expected metrics of these events, processed in list order (the first of each event id
    counts; a refused event counts nothing)."""
    unique: dict[str, dict[str, Any]] = {}
    for e in events:
        unique.setdefault(e["event_id"].lower(), e)
    out = Expected()
    raw: dict[tuple[str, date], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    logins: dict[tuple[str, str], list[tuple[datetime, str, str]]] = defaultdict(list)
    logouts: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    membership: dict[tuple[str, str], list[tuple[datetime, str, bool]]] = defaultdict(list)
    bonus: dict[tuple[str, str], int] = defaultdict(int)
    group_messages: dict[tuple[str, str], int] = defaultdict(int)
    # SPEC §9: a pair is friends from its earliest friend_added, either direction; only that
    # one counts, for its actor on its day.
    friendships: dict[frozenset[str], tuple[datetime, str, str, date, str]] = {}

    for e in unique.values():
        why = refusal(e, out.groups)
        if why is not None:
            out.refused[e["event_id"]] = why
            continue
        at = ts(e["occurred_at"])
        d = day_of(at)
        u = e["user_id"]
        kind = e["type"]
        out.first_seen[u] = min(out.first_seen.get(u, d), d)
        if e.get("group_id"):
            out.seen_groups.add(e["group_id"])
        if kind == "message":
            if e["client"] == "sms":
                raw[(u, d)]["messages_sms"] += 1
            else:
                raw[(u, d)]["messages"] += 1
                if e["client"] == "mobile":
                    raw[(u, d)]["messages_mobile"] += 1
                if e.get("group_id"):
                    group_messages[(e["group_id"], month_key(d))] += 1
        elif kind == "login":
            raw[(u, d)]["logins"] += 1
            logins[(u, e["session_id"])].append((at, e["event_id"], e["client"]))
        elif kind == "logout":
            logouts[(u, e["session_id"])].append(at)
        elif kind == "points":
            raw[(u, d)]["points_delta"] += e["delta"]
        elif kind == "friend_added":
            raw[(u, d)].setdefault("friends_added", 0)  # credited below, to the first only
            pair = frozenset((u, e["friend_user_id"]))
            first = (at, e["event_id"].lower(), u, d, e["friend_user_id"])
            if pair not in friendships or first[:2] < friendships[pair][:2]:
                friendships[pair] = first
        elif kind == "checkin":
            raw[(u, d)]["checkins"] += 1
        elif kind == "bonus_card":
            bonus[(e["group_id"], month_key(d))] += e["points"]
        elif kind == "group_created":
            g = e["group_id"]
            info = out.groups.setdefault(g, {})
            info |= {"province": e["province"], "created_at": at, "event_id": e["event_id"]}
            if "transfer" not in info:
                info["owner"] = u
            membership[(g, u)].append((at, e["event_id"], True))
        elif kind == "group_owner_changed":
            info = out.groups.setdefault(e["group_id"], {})
            if (at, e["event_id"]) > info.get("transfer", (at, "")):
                info |= {"transfer": (at, e["event_id"]), "owner": u}
        elif kind in ("group_join", "group_leave"):
            membership[(e["group_id"], u)].append((at, e["event_id"], kind == "group_join"))
        elif kind == "group_dissolved":
            g = e["group_id"]
            info = out.groups.setdefault(g, {})
            info["dissolved_at"] = min(info.get("dissolved_at", at), at)

    # Sessions: earliest login (client of it), latest logout, capped at 24 h, split by local day;
    # each day gets floor(seconds from the start to its end) - floor(... to its start), so the
    # days sum to the capped length's whole seconds (SPEC §9).
    for key, ins in logins.items():
        if key not in logouts:
            continue
        start, _, client = min(ins)
        end = min(max(logouts[key]), start + timedelta(hours=24))
        if end <= start or client == "sms":
            continue
        cursor = start
        while cursor < end:
            d = day_of(cursor)
            next_midnight = datetime(d.year, d.month, d.day, tzinfo=TZ) + timedelta(days=1)
            upto = min(end, next_midnight)
            whole = seconds_between(start, upto) - seconds_between(start, cursor)
            raw[(key[0], d)][f"online_seconds_{client}"] += whole
            cursor = upto

    for _, _, adder, day, friend in friendships.values():
        raw[(adder, day)]["friends_added"] += 1
        out.friend_ids.setdefault((adder, day), []).append(friend)
    for ids in out.friend_ids.values():
        ids.sort()

    fields = (
        "messages",
        "messages_sms",
        "messages_mobile",
        "online_seconds_pc",
        "online_seconds_mobile",
        "points_delta",
        "friends_added",
        "checkins",
        "logins",
    )
    for (u, d), counters in raw.items():
        row = {f: counters.get(f, 0) for f in fields}
        online = min(4, row["online_seconds_pc"] // 900 + row["online_seconds_mobile"] // 300)
        msg = min(row["messages"], 20)
        row |= {"online_points": online, "message_points": msg, "activity_points": online + msg}
        out.user_day[(u, d)] = row
        monthly = out.user_month.setdefault((u, month_key(d)), defaultdict(int))
        for k, v in row.items():
            if k != "messages_mobile":  # a day-only metric
                monthly[k] += v
        monthly["active_days"] += 1 if row["messages"] >= 1 else 0

    # A group has a month when it has members at the month's end or messages or bonus cards in
    # it — zeros where nothing happened (SPEC §9: on the leaderboard from the month it exists).
    for month in months:
        end = month_end(month)
        members_of: dict[str, list[str]] = defaultdict(list)
        for (g, u), evs in membership.items():
            before = [ev for ev in evs if ev[0] < end]
            if before and max(before)[2]:
                members_of[g].append(u)
        for g in (
            set(members_of)
            | {g for g, m in bonus if m == month}
            | {g for g, m in group_messages if m == month}
        ):
            members = sorted(members_of.get(g, []))
            out.members[(g, month)] = members
            um = [out.user_month.get((u, month), {}) for u in members]
            out.group_month[(g, month)] = {
                "members": len(members),
                "active_members": sum(1 for x in um if x.get("messages", 0) >= 1),
                "activity_points": sum(x.get("activity_points", 0) for x in um),
                "points_growth": sum(x.get("points_delta", 0) for x in um),
                "bonus_points": bonus.get((g, month), 0),
                "group_messages": group_messages.get((g, month), 0),
            }
    return out


def leaderboard(exp: Expected, month: str, province: str) -> list[str]:
    """Group ids in leaderboard order (default weights, no filters)."""
    end = month_end(month)
    rows = []
    for (g, m), v in exp.group_month.items():
        info = exp.groups.get(g, {})
        if m != month or info.get("province") != province or "created_at" not in info:
            continue
        if info["created_at"] >= end or info.get("dissolved_at", end) < end:
            continue
        vitality = v["points_growth"] + v["activity_points"] + v["bonus_points"]
        rows.append((-vitality, -v["active_members"], g))
    return [g for _, _, g in sorted(rows)]
