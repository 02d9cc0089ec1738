"""Group membership as of an instant (SPEC §4).

User u is a member of group g at T when the latest — by (occurred_at, event_id) — of u's
`group_join` / `group_leave` events for g with occurred_at < T is a join (`group_created` is the
owner's join). The events of a pair fold into spans [joined_at, left_at): u is a member at T iff
joined_at < T <= left_at (or left_at is None).

A group's month counts its members as of the month's end, so what a batch of joins and leaves
changes is a set of flips: (group, user, month) pairs whose month-end membership it turned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.scoring.domain.periods import end_of_month, local_day, month_of, months_between

Pair = tuple[str, str]  # (group_id, user_id)


@dataclass(frozen=True, slots=True)
class MembershipFact:
    """A join (`group_join`, `group_created`) or leave (`group_leave`) of a pair."""

    group_id: str
    user_id: str
    at: datetime
    event_id: str
    joined: bool


@dataclass(frozen=True, slots=True, order=True)
class MembershipEvent:
    occurred_at: datetime
    event_id: str
    joined: bool


@dataclass(frozen=True, slots=True)
class Span:
    joined_at: datetime
    left_at: datetime | None

    def contains(self, at: datetime) -> bool:
        return self.joined_at < at and (self.left_at is None or at <= self.left_at)


@dataclass(frozen=True, slots=True)
class MembershipFlip:
    """The pair's membership as of `month`'s end turned: joined (+1 member) or left (-1)."""

    group_id: str
    user_id: str
    month: date
    joined: bool


def spans_of(events: Iterable[MembershipEvent]) -> list[Span]:
    """Fold a pair's join/leave events, in any order, into membership spans."""
    spans: list[Span] = []
    joined_at: datetime | None = None
    for event in sorted(events):
        if event.joined and joined_at is None:
            joined_at = event.occurred_at
        elif not event.joined and joined_at is not None:
            spans.append(Span(joined_at, event.occurred_at))
            joined_at = None
    if joined_at is not None:
        spans.append(Span(joined_at, None))
    return spans


def is_member(spans: Iterable[Span], at: datetime) -> bool:
    return any(span.contains(at) for span in spans)


def pairs_of(facts: Iterable[MembershipFact]) -> list[Pair]:
    """The (group, user) pairs the facts are about, in key order."""
    return sorted({(f.group_id, f.user_id) for f in facts})


def membership_flips(
    facts: Sequence[MembershipFact],
    spans_before: Mapping[Pair, Sequence[Span]],
    spans_after: Mapping[Pair, Sequence[Span]],
    now: datetime,
    tz: ZoneInfo,
) -> list[MembershipFlip]:
    """The month-end flips new facts cause, given each pair's spans before and after them.

    A fact can change membership at the end of its own month and of every later one, up to the
    current month (or the latest fact's, if a clock runs ahead): those months are compared.
    """
    if not facts:
        return []
    earliest: dict[Pair, datetime] = {}
    for f in facts:
        pair = (f.group_id, f.user_id)
        earliest[pair] = min(earliest.get(pair, f.at), f.at)
    last = max(month_of(local_day(now, tz)), month_of(local_day(max(f.at for f in facts), tz)))
    flips: list[MembershipFlip] = []
    for pair, first in earliest.items():
        before, after = spans_before.get(pair, ()), spans_after.get(pair, ())
        for month in months_between(local_day(first, tz), last):
            end = end_of_month(month, tz)
            was, is_now = is_member(before, end), is_member(after, end)
            if was != is_now:
                flips.append(MembershipFlip(pair[0], pair[1], month, joined=is_now))
    return flips
