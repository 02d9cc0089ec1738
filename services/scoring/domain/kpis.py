"""Business KPIs (SPEC §12): each user's contribution to a day's and a month's figures, per
province and client. Pure: the use case (usecases/kpis.py) diffs a user's contribution before
and after a batch and adds the difference to the KPI rows, so they stay exact incrementally.

Rows are keyed (period, province, client). `client` is `all` (every user once) or one of
`pc`, `mobile`, `sms`: there `active_users` counts users with ≥ 1 message from that client
(for `sms` they are senders, never "active" in SPEC §4's sense), and `messages`,
`online_seconds`, `sessions` are that client's; new users, check-ins and lifecycle counts are
per user, not per client, so they are only in `all` (0 elsewhere).

A user's province in a month is the province of the group they sent most pc/mobile messages
to that month (ties: smallest group id), `unknown` without group messages. While that group's
`group_created` has not arrived, the user counts under `?<group_id>` (`pending_key`), which the
creation folds into the group's province; reads show those under `unknown`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Literal

from services.scoring.domain.lifecycle import Stage
from services.scoring.domain.points import is_active

Client = Literal["all", "pc", "mobile", "sms"]
CLIENTS: tuple[Client, ...] = ("all", "pc", "mobile", "sms")
UNKNOWN_PROVINCE = "unknown"
PENDING_PREFIX = "?"
DAY_KPIS = ("active_users", "new_users", "messages", "online_seconds", "sessions", "checkins")
MONTH_KPIS = (
    *DAY_KPIS,
    "returning_users",
    "resurrecting_users",
    "dormant_users",
    "loyal_users",
)
_STAGE_KPI = {s: MONTH_KPIS.index(f"{s}_users") for s in ("returning", "resurrecting", "dormant")}
_LOYAL = MONTH_KPIS.index("loyal_users")

KpiKey = tuple[date, str, Client]  # (day or month, province key, client)
KpiDeltas = dict[KpiKey, list[int]]


@dataclass(frozen=True, slots=True)
class Counts:
    """The stored counters a user's day or month contributes from (user_day / user_month)."""

    messages: int = 0  # pc + mobile
    messages_mobile: int = 0
    messages_sms: int = 0
    online_seconds_pc: int = 0
    online_seconds_mobile: int = 0
    sessions_pc: int = 0
    sessions_mobile: int = 0
    sessions_sms: int = 0
    checkins: int = 0

    def minus(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f) - getattr(other, f) for f in COUNT_FIELDS))


COUNT_FIELDS = tuple(f.name for f in fields(Counts))
NO_COUNTS = Counts()


def province_key(top_group: str | None, province: str | None) -> str:
    """Where a user-month counts: its top group's province, `?<group>` while that group's
    creation has not arrived, `unknown` without group messages."""
    if top_group is None:
        return UNKNOWN_PROVINCE
    return province if province is not None else PENDING_PREFIX + top_group


def shown_province(key: str) -> str:
    """The province a KPI row is read under (pending groups' users are `unknown`)."""
    return UNKNOWN_PROVINCE if key.startswith(PENDING_PREFIX) else key


def _per_client(c: Counts, width: int, new: bool) -> dict[Client, list[int]]:
    pc_messages = c.messages - c.messages_mobile
    out: dict[Client, list[int]] = {
        "all": [
            int(is_active(c.messages)),
            int(new),
            c.messages + c.messages_sms,
            c.online_seconds_pc + c.online_seconds_mobile,
            c.sessions_pc + c.sessions_mobile + c.sessions_sms,
            c.checkins,
        ],
        "pc": [int(pc_messages >= 1), 0, pc_messages, c.online_seconds_pc, c.sessions_pc, 0],
        "mobile": [
            int(c.messages_mobile >= 1),
            0,
            c.messages_mobile,
            c.online_seconds_mobile,
            c.sessions_mobile,
            0,
        ],
        "sms": [int(c.messages_sms >= 1), 0, c.messages_sms, 0, c.sessions_sms, 0],
    }
    for values in out.values():
        values.extend([0] * (width - len(values)))
    return out


def day_contribution(counts: Counts, first_seen_today: bool) -> dict[Client, list[int]]:
    """A user's day's share of the day's KPIs (DAY_KPIS order), by client."""
    return _per_client(counts, len(DAY_KPIS), first_seen_today)


def month_contribution(counts: Counts, stage: Stage | None, loyal: bool) -> dict[Client, list[int]]:
    """A user's month's share of the month's KPIs (MONTH_KPIS order), by client; `new_users`
    is the `new` stage (first_seen in the month)."""
    out = _per_client(counts, len(MONTH_KPIS), stage == "new")
    total = out["all"]
    if stage in _STAGE_KPI:
        total[_STAGE_KPI[stage]] = 1
    total[_LOYAL] = int(loyal)
    return out


def add_contribution(
    deltas: KpiDeltas,
    period: date,
    province: str,
    contribution: Mapping[Client, list[int]],
    sign: int,
) -> None:
    """deltas[(period, province, client)] += sign · contribution (skipping all-zero parts)."""
    for client, values in contribution.items():
        if not any(values):
            continue
        row = deltas.get((period, province, client))
        if row is None:
            row = deltas[(period, province, client)] = [0] * len(values)
        for i, v in enumerate(values):
            row[i] += sign * v


def nonzero(deltas: KpiDeltas) -> KpiDeltas:
    return {k: v for k, v in deltas.items() if any(v)}
