"""Group membership as of an instant (SPEC §4).

User u is a member of group g at T when the latest — by (occurred_at, event_id) — of u's
`group_join` / `group_leave` events for g with occurred_at < T is a join (`group_created` is the
owner's join). The events of a pair fold into spans [joined_at, left_at): u is a member at T iff
joined_at < T <= left_at (or left_at is None).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


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
