"""Accepting a request's events (SPEC §3, §14): valid events are published with when and from
whom they came and who vouched for them, and nothing is published over the key's (or user's)
rate or acknowledged unconfirmed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from services.ingest.domain.authority import key_speaker, user_speaker
from services.ingest.domain.intake import AcceptedEvent
from services.ingest.usecases.accept_events import accept_events
from shared.auth import Principal, Role, TokenBucket
from shared.contract import MAX_AGE, Authority
from shared.errors import RateLimited, Unavailable
from tests.builders import NOW, make_event

HOUR_AGO = NOW - timedelta(hours=1)
CLIENT = key_speaker(
    Principal("k1", "platform", frozenset({Role.PLATFORM}), rate_per_s=100.0), importing=False
)
SLOW = key_speaker(
    Principal("k2", "throttled", frozenset({Role.INGEST}), rate_per_s=1.0), importing=False
)
RELAY = key_speaker(
    Principal("k3", "relay", frozenset({Role.INGEST}), rate_per_s=100.0), importing=False
)


class Broker:
    """Records what was published, as the broker would have acknowledged it."""

    def __init__(self, fail: bool = False) -> None:
        self.published: list[tuple[list[str], str, str]] = []
        self.authorities: list[Authority] = []
        self.fail = fail

    async def publish(
        self,
        events: Sequence[AcceptedEvent],
        received_at: str,
        source: str,
        authority: Authority,
    ) -> None:
        if self.fail:
            raise Unavailable("the event broker did not confirm the write")
        self.published.append(([e.raw["event_id"] for e in events], received_at, source))
        self.authorities.append(authority)


def limiter(burst: float = 500.0) -> TokenBucket:
    """A key may spend at most `burst` tokens at once (or one second of its rate, if more)."""
    return TokenBucket(burst_s=1.0, min_burst=burst)


async def test_valid_events_are_published_with_received_at_and_the_keys_id() -> None:
    good, bad = make_event(at=HOUR_AGO), make_event("points", delta=0, at=HOUR_AGO)
    broker = Broker()
    result = await accept_events({"events": [good, bad]}, CLIENT, NOW, MAX_AGE, limiter(), broker)
    assert [a.index for a in result.accepted] == [0]
    assert [(r.index, r.code) for r in result.rejected] == [(1, "invalid_field")]
    assert broker.published == [([good["event_id"]], NOW.isoformat(), "k1")]


async def test_a_request_with_no_valid_event_publishes_nothing() -> None:
    broker = Broker()
    stale = make_event(at=NOW - timedelta(days=40))
    result = await accept_events(stale, CLIENT, NOW, MAX_AGE, limiter(), broker)
    assert not result.accepted and result.rejected[0].code == "out_of_window"
    assert broker.published == []


async def test_historical_import_accepts_events_of_any_age() -> None:
    old = make_event(at=NOW - timedelta(days=400))
    broker = Broker()
    result = await accept_events(old, CLIENT, NOW, None, limiter(), broker)
    assert len(result.accepted) == 1 and len(broker.published) == 1


async def test_over_the_keys_rate_nothing_is_published_and_retry_after_is_given() -> None:
    bucket, broker = limiter(burst=2), Broker()
    batch = {"events": [make_event(at=HOUR_AGO) for _ in range(3)]}
    with pytest.raises(RateLimited) as refused:
        await accept_events(batch, SLOW, NOW, MAX_AGE, bucket, broker)
    assert refused.value.headers["Retry-After"] == "1"
    assert broker.published == []


async def test_refused_events_cost_rate_tokens_too() -> None:
    """A flood of invalid events meets the same 429 as valid ones (issue 18)."""
    bucket, broker = limiter(burst=4), Broker()
    invalid = {"events": [make_event("points", delta=0, at=HOUR_AGO) for _ in range(3)]}
    result = await accept_events(invalid, SLOW, NOW, MAX_AGE, bucket, broker)
    assert len(result.rejected) == 3 and not result.accepted
    with pytest.raises(RateLimited, match="refused events count"):
        await accept_events(invalid, SLOW, NOW, MAX_AGE, bucket, broker)
    assert broker.published == []


async def test_an_unconfirmed_write_is_not_acknowledged() -> None:
    with pytest.raises(Unavailable):
        await accept_events(make_event(at=HOUR_AGO), CLIENT, NOW, MAX_AGE, limiter(), Broker(True))


async def test_a_user_tokens_events_carry_user_authority_and_its_source() -> None:
    own, other = make_event(at=HOUR_AGO, user_id="u7"), make_event(at=HOUR_AGO, user_id="u8")
    broker = Broker()
    result = await accept_events(
        {"events": [own, other]}, user_speaker("u7", 20.0), NOW, MAX_AGE, limiter(), broker
    )
    assert [(r.index, r.code) for r in result.rejected] == [(1, "user_mismatch")]
    assert broker.published == [([own["event_id"]], NOW.isoformat(), "user:u7")]
    assert broker.authorities == ["user"]


async def test_a_relay_key_cannot_post_points_and_its_events_are_marked_relay() -> None:
    broker = Broker()
    points, message = make_event("points", at=HOUR_AGO), make_event(at=HOUR_AGO)
    result = await accept_events(
        {"events": [points, message]}, RELAY, NOW, MAX_AGE, limiter(), broker
    )
    assert [(r.index, r.code) for r in result.rejected] == [(0, "type_not_allowed")]
    assert "platform key" in result.rejected[0].message
    assert broker.authorities == ["relay"]


async def test_a_platform_keys_events_are_marked_platform() -> None:
    broker = Broker()
    await accept_events(make_event("points", at=HOUR_AGO), CLIENT, NOW, MAX_AGE, limiter(), broker)
    assert broker.authorities == ["platform"]


async def test_a_users_rate_is_charged_to_the_user_not_shared() -> None:
    bucket, broker = limiter(burst=2), Broker()
    two = {"events": [make_event(at=HOUR_AGO, user_id="u7") for _ in range(2)]}
    await accept_events(two, user_speaker("u7", 1.0), NOW, MAX_AGE, bucket, broker)
    with pytest.raises(RateLimited, match="this user's rate"):
        await accept_events(two, user_speaker("u7", 1.0), NOW, MAX_AGE, bucket, broker)
    other = {"events": [make_event(at=HOUR_AGO, user_id="u9") for _ in range(2)]}
    await accept_events(other, user_speaker("u9", 1.0), NOW, MAX_AGE, bucket, broker)
    assert len(broker.published) == 2
