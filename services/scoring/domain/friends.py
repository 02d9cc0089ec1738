"""Friendships count once (SPEC §9): a pair of users is friends from the first `friend_added`
between them, in either direction, by (`occurred_at`, `event_id`); a later one — a re-add, or
the other user adding back — changes nothing.

The first add of each pair is kept (store/friends.py). A user's `friends_added` of a day is the
number of pairs whose first add they made that day, read from those firsts when published or
read — so a late event that is earlier than the stored first moves the pair's credit to its
own actor and day, whatever the arrival order (SPEC §4), and no counter of another user's
partition is ever written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

Pair = tuple[str, str]  # (smaller user id, larger user id)


def pair_of(a: str, b: str) -> Pair:
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True, slots=True, order=True)
class FirstAdd:
    """The first `friend_added` of a pair: ordered by (at, event_id)."""

    at: datetime
    event_id: str
    adder: str
    day: date  # local day of `at`

    def friend(self, pair: Pair) -> str:
        return pair[1] if pair[0] == self.adder else pair[0]


def earliest(adds: Iterable[tuple[Pair, FirstAdd]]) -> dict[Pair, FirstAdd]:
    """The batch's first add of each pair."""
    out: dict[Pair, FirstAdd] = {}
    for pair, add in adds:
        held = out.get(pair)
        if held is None or add < held:
            out[pair] = add
    return out


@dataclass(frozen=True, slots=True)
class Move:
    """A pair whose first add is now `new` (it was `old`; None = a new friendship)."""

    pair: Pair
    old: FirstAdd | None
    new: FirstAdd


def moves(stored: Mapping[Pair, FirstAdd], batch: Mapping[Pair, FirstAdd]) -> list[Move]:
    """The pairs whose first add the batch makes or moves earlier."""
    out: list[Move] = []
    for pair in sorted(batch):
        old, new = stored.get(pair), batch[pair]
        if old is None or new < old:
            out.append(Move(pair, old, new))
    return out
