"""Friendships count once (SPEC §9): the first `friend_added` of a pair, either direction, by
(occurred_at, event_id), is the friendship; re-adds change nothing, a late earlier add moves it."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.scoring.domain.batch import plan_batch
from services.scoring.domain.friends import FirstAdd, earliest, moves, pair_of
from shared.contract import decode_envelope, encode_envelope
from tests.builders import make_event

TZ = ZoneInfo("Asia/Shanghai")


def add(user: str, at: datetime, event_id: str) -> FirstAdd:
    return FirstAdd(at, event_id, user, at.astimezone(TZ).date())


def test_a_pair_is_the_same_whichever_side_adds() -> None:
    assert pair_of("b", "a") == pair_of("a", "b") == ("a", "b")


def test_a_replayed_or_returned_add_of_an_existing_pair_changes_nothing() -> None:
    first = add("a", datetime(2026, 10, 3, 4, tzinfo=UTC), "e1")
    stored = {("a", "b"): first}
    again = earliest(
        [
            (("a", "b"), add("a", datetime(2026, 10, 5, tzinfo=UTC), "e2")),  # a re-adds b
            (("a", "b"), add("b", datetime(2026, 10, 4, tzinfo=UTC), "e3")),  # b adds a back
        ]
    )
    assert moves(stored, again) == []


def test_a_late_earlier_add_moves_the_friendship_to_its_actor_and_day() -> None:
    stored = {("a", "b"): add("a", datetime(2026, 10, 5, tzinfo=UTC), "e9")}
    late = add("b", datetime(2026, 10, 2, tzinfo=UTC), "e1")
    (moved,) = moves(stored, {("a", "b"): late})
    assert (moved.old, moved.new) == (stored[("a", "b")], late)
    assert moved.new.friend(("a", "b")) == "a"


def test_ties_in_time_go_to_the_smaller_event_id() -> None:
    at = datetime(2026, 10, 2, tzinfo=UTC)
    batch = earliest([(("a", "b"), add("b", at, "e2")), (("a", "b"), add("a", at, "e1"))])
    assert batch[("a", "b")].adder == "a"


def test_a_friend_added_is_not_counted_per_event_but_kept_as_a_pair() -> None:
    events = [
        make_event(type="friend_added", user_id="a", friend_user_id="b"),
        make_event(type="friend_added", user_id="b", friend_user_id="a"),
    ]
    received = datetime.now(UTC).isoformat()
    envelopes = [decode_envelope(encode_envelope(e, received, "t", "platform")) for e in events]
    plan = plan_batch(envelopes, TZ)
    assert all(d.friends_added == 0 for d in plan.user_day.values())
    assert {p for p, _ in plan.friend_adds} == {("a", "b")}
    assert len(earliest(plan.friend_adds)) == 1
