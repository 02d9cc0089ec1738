"""What members' months add to their groups' months, and how a batch changes it (SPEC §4).

A group's month is the sum, over its members as of the month's end, of each member's
contribution (one member; active or not; activity points; points growth), plus the group's own
counters (messages carrying the group, bonus cards). Replicas update group months by deltas,
which commute (SPEC §4 "scales out"), so a batch turns into one `GroupMonthDelta` per touched
group month:

- a continuing member's month changed: new contribution − old contribution;
- a member joined (left) as of the month's end: + (−) the contribution at the new values;
- messages and bonus cards of the batch: their counts.

Summed, this is "new members at new values" minus "old members at old values".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from services.scoring.domain.membership import MembershipFlip
from services.scoring.domain.points import is_active

UserMonthKey = tuple[str, date]  # (user_id, month)
GroupMonthKey = tuple[str, date]  # (group_id, month)


@dataclass(frozen=True, slots=True)
class MemberMonth:
    """The part of a user's month that counts toward the groups the user is a member of."""

    messages: int = 0
    activity_points: int = 0
    points_delta: int = 0


NO_ACTIVITY = MemberMonth()


@dataclass(slots=True)
class GroupMonthDelta:
    """An increment to one group month's counters (mutable: a batch accumulates into it)."""

    members: int = 0
    active_members: int = 0
    activity_points: int = 0
    points_growth: int = 0
    group_messages: int = 0
    bonus_points: int = 0

    def add(self, other: GroupMonthDelta, times: int = 1) -> None:
        self.members += times * other.members
        self.active_members += times * other.active_members
        self.activity_points += times * other.activity_points
        self.points_growth += times * other.points_growth
        self.group_messages += times * other.group_messages
        self.bonus_points += times * other.bonus_points

    def __sub__(self, other: GroupMonthDelta) -> GroupMonthDelta:
        return GroupMonthDelta(
            self.members - other.members,
            self.active_members - other.active_members,
            self.activity_points - other.activity_points,
            self.points_growth - other.points_growth,
            self.group_messages - other.group_messages,
            self.bonus_points - other.bonus_points,
        )

    def __bool__(self) -> bool:
        """True when it changes anything."""
        return bool(
            self.members
            or self.active_members
            or self.activity_points
            or self.points_growth
            or self.group_messages
            or self.bonus_points
        )


def contribution(month: MemberMonth) -> GroupMonthDelta:
    """What one member, with this month, adds to a group's month."""
    return GroupMonthDelta(
        members=1,
        active_members=1 if is_active(month.messages) else 0,
        activity_points=month.activity_points,
        points_growth=month.points_delta,
    )


def group_month_deltas(
    groups_of: Mapping[UserMonthKey, Sequence[str]],
    before: Mapping[UserMonthKey, MemberMonth],
    after: Mapping[UserMonthKey, MemberMonth],
    flips: Iterable[MembershipFlip],
    own: Mapping[GroupMonthKey, GroupMonthDelta],
) -> dict[GroupMonthKey, GroupMonthDelta]:
    """Every group month a batch touches, with its change (which may be nothing).

    `groups_of`: the groups each changed user month's user belonged to at the month's end
    before the batch's joins and leaves; `before` / `after`: those user months' values around
    the batch (absent: no activity), `after` also holding every flipped user month's current
    values; `own`: the batch's group messages and bonus points.
    """
    deltas: dict[GroupMonthKey, GroupMonthDelta] = {}

    def delta(key: GroupMonthKey) -> GroupMonthDelta:
        found = deltas.get(key)
        if found is None:
            found = deltas[key] = GroupMonthDelta()
        return found

    for key, groups in groups_of.items():
        change = contribution(after.get(key, NO_ACTIVITY)) - contribution(
            before.get(key, NO_ACTIVITY)
        )
        if change:
            month = key[1]
            for group_id in groups:
                delta((group_id, month)).add(change)
    for flip in flips:
        member = contribution(after.get((flip.user_id, flip.month), NO_ACTIVITY))
        delta((flip.group_id, flip.month)).add(member, 1 if flip.joined else -1)
    for key, counted in own.items():
        delta(key).add(counted)
    return deltas
