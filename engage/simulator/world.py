"""A seeded, realistic world of users and groups, and the events they produce. Pure: no I/O.

The same seed gives the same events, so a test can recompute expected results independently.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.contract import PROVINCES

# Where the users live: a few big provinces dominate, as in real traffic.
_PROVINCE_WEIGHTS = {p: 1.0 for p in PROVINCES} | {
    "GD": 8,
    "JS": 6,
    "ZJ": 6,
    "SD": 5,
    "HA": 4,
    "SC": 4,
    "BJ": 4,
    "SH": 4,
    "HB": 3,
    "HN": 3,
}


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int = 7
    users: int = 2000
    groups: int = 120
    timezone: str = "Asia/Shanghai"
    duplicate_rate: float = 0.02  # share of events sent twice with the same event_id
    shuffle_window: int = 500  # events are shuffled within windows of this many (out of order)
    dissolve_rate: float = 0.03


@dataclass(slots=True)
class User:
    user_id: str
    province: str
    client: str  # preferred client: pc, mobile or sms
    activity: float  # probability of being active on a given day
    chatty: bool = False  # sends more than the 20 messages a day that earn points
    groups: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Group:
    group_id: str
    owner: str
    province: str
    members: list[str]


@dataclass(slots=True)
class World:
    config: SimConfig
    users: list[User]
    groups: list[Group]

    @classmethod
    def build(cls, config: SimConfig) -> World:
        rnd = random.Random(config.seed)
        provinces = list(_PROVINCE_WEIGHTS)
        weights = list(_PROVINCE_WEIGHTS.values())
        users = [
            User(
                user_id=f"u{i:06d}",
                province=rnd.choices(provinces, weights)[0],
                client=rnd.choices(["pc", "mobile", "sms"], [0.35, 0.55, 0.10])[0],
                activity=min(0.95, rnd.betavariate(2, 3)),
                chatty=rnd.random() < 0.1,
            )
            for i in range(config.users)
        ]
        groups: list[Group] = []
        for g in range(config.groups):
            # Many groups at or above 25 members (the "tribe chief" threshold), a long tail.
            size = (
                rnd.randint(3, 24)
                if rnd.random() < 0.35
                else min(500, int(25 + rnd.expovariate(1 / 60)))
            )
            size = min(size, len(users))
            members = [u.user_id for u in rnd.sample(users, size)]
            owner = users[int(members[0][1:])]
            groups.append(Group(f"g{g:05d}", owner.user_id, owner.province, members))
            for m in members:
                users[int(m[1:])].groups.append(f"g{g:05d}")
        return cls(config, users, groups)


def _event(
    rnd: random.Random, kind: str, at: datetime, user_id: str, **fields: Any
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
        "type": kind,
        "occurred_at": at.isoformat(timespec="seconds"),
        "user_id": user_id,
        **fields,
    }


def month_start(day: date) -> date:
    return day.replace(day=1)


def previous_month(day: date) -> date:
    return (month_start(day) - timedelta(days=1)).replace(day=1)


def generate(world: World, start: date, end: datetime) -> Iterator[dict[str, Any]]:
    """Events from local midnight of `start` up to `end`, roughly in time order."""
    cfg = world.config
    tz = ZoneInfo(cfg.timezone)
    rnd = random.Random(f"{cfg.seed}:{start.isoformat()}")
    t0 = datetime(start.year, start.month, start.day, tzinfo=tz)
    end = end.astimezone(tz)

    # Groups exist from the first hour; the owner's creation counts as their join.
    for g in world.groups:
        at = t0 + timedelta(minutes=rnd.randint(0, 50))
        yield _event(
            rnd,
            "group_created",
            at,
            g.owner,
            group_id=g.group_id,
            name=f"Group {g.group_id}",
            province=g.province,
        )
        for m in g.members[1:]:
            yield _event(
                rnd,
                "group_join",
                at + timedelta(seconds=rnd.randint(1, 600)),
                m,
                group_id=g.group_id,
            )

    day = t0
    while day < end:
        day_events: list[dict[str, Any]] = []
        for user in world.users:
            if rnd.random() > user.activity:
                continue
            day_events.extend(_user_day(rnd, world, user, day))
        for g in world.groups:
            if rnd.random() < 0.15:
                owner_at = day + timedelta(seconds=rnd.randint(8 * 3600, 22 * 3600))
                day_events.append(
                    _event(
                        rnd,
                        "bonus_card",
                        owner_at,
                        g.owner,
                        group_id=g.group_id,
                        points=rnd.randint(1, 50),
                    )
                )
            if rnd.random() < 0.02 and len(g.members) > 3:  # churn: someone leaves, someone joins
                leaver = rnd.choice(g.members[1:])
                joiner = rnd.choice(world.users).user_id
                at = day + timedelta(seconds=rnd.randint(0, 86_399))
                day_events.append(_event(rnd, "group_leave", at, leaver, group_id=g.group_id))
                day_events.append(
                    _event(
                        rnd, "group_join", at + timedelta(minutes=5), joiner, group_id=g.group_id
                    )
                )
        if day.day == 20:
            for g in world.groups:
                if rnd.random() < cfg.dissolve_rate:
                    day_events.append(
                        _event(
                            rnd,
                            "group_dissolved",
                            day + timedelta(hours=12),
                            g.owner,
                            group_id=g.group_id,
                        )
                    )
        day_events.sort(key=lambda e: e["occurred_at"])
        for event in day_events:
            if datetime.fromisoformat(event["occurred_at"]) < end:
                yield event
        day += timedelta(days=1)


def _user_day(rnd: random.Random, world: World, user: User, day: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    client = user.client if rnd.random() < 0.8 else rnd.choice(["pc", "mobile", "sms"])
    for _ in range(rnd.choice([1, 1, 1, 2])):
        start = day + timedelta(
            seconds=rnd.randint(6 * 3600, 23 * 3600 + 1800)
        )  # may cross midnight
        mean_s = 2400 if client == "pc" else 900
        length = timedelta(seconds=int(rnd.expovariate(1 / mean_s)) + 30)
        quirk = rnd.random()
        if quirk < 0.01:  # a client that never logged out: counted up to 24 h
            length = timedelta(hours=rnd.randint(20, 40))
        elif quirk < 0.015:  # a skewed clock: logout stamped before login, counts nothing
            length = -timedelta(minutes=rnd.randint(1, 30))
        session = f"s{rnd.getrandbits(40):x}"
        out.append(_event(rnd, "login", start, user.user_id, client=client, session_id=session))
        if quirk > 0.98:  # a reconnect: a later login from another client, same session
            other = "mobile" if client == "pc" else "pc"
            later = start + timedelta(seconds=rnd.randint(1, 600))
            out.append(_event(rnd, "login", later, user.user_id, client=other, session_id=session))
        out.append(
            _event(rnd, "logout", start + length, user.user_id, client=client, session_id=session)
        )
        for _ in range(rnd.randint(5, 25) if user.chatty else rnd.randint(0, 8)):
            at = start + timedelta(seconds=rnd.randint(0, max(0, int(length.total_seconds()))))
            fields: dict[str, Any] = {"client": client}
            if user.groups and rnd.random() < 0.7:
                fields["group_id"] = rnd.choice(user.groups)
            else:
                fields["to_user_id"] = rnd.choice(world.users).user_id
            out.append(_event(rnd, "message", at, user.user_id, **fields))
    noon = day + timedelta(hours=12, seconds=rnd.randint(0, 3600))
    if rnd.random() < 0.3:
        out.append(_event(rnd, "checkin", noon, user.user_id, campaign_id="daily-checkin"))
    if rnd.random() < 0.15:
        delta = rnd.choice([-1, 1, 1, 1]) * rnd.randint(1, 200)
        out.append(_event(rnd, "points", noon, user.user_id, delta=delta, reason="activity"))
    if rnd.random() < 0.05:
        friend = rnd.choice(world.users).user_id
        if friend != user.user_id:
            out.append(_event(rnd, "friend_added", noon, user.user_id, friend_user_id=friend))
    return out


def deliveries(events: list[dict[str, Any]], config: SimConfig) -> list[dict[str, Any]]:
    """What the clients actually send: some events twice, and out of order within windows."""
    rnd = random.Random(f"{config.seed}:deliveries")
    sent: list[dict[str, Any]] = []
    for event in events:
        sent.append(event)
        if rnd.random() < config.duplicate_rate:
            sent.append(event)
    if config.shuffle_window > 1:
        for i in range(0, len(sent), config.shuffle_window):
            window = sent[i : i + config.shuffle_window]
            rnd.shuffle(window)
            sent[i : i + config.shuffle_window] = window
    return sent
