"""Accepting a request's events (SPEC §3, §14): screen them (valid, and theirs to post), charge
the key's or user's rate, publish the accepted ones stamped with who vouched for them, and return
only once the broker acknowledged them all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from prometheus_client import Counter

from services.ingest.domain.authority import Speaker
from services.ingest.domain.intake import AcceptedEvent, Screening, screen
from shared.auth import TokenBucket
from shared.contract import EVENT_TYPES, MAX_FUTURE, Authority, WindowContext
from shared.errors import RateLimited

EVENTS = Counter(
    "engage_ingest_events_total",
    "Events received by ingest, by result and type.",
    ["result", "type"],
)
for _type in (*EVENT_TYPES, "invalid"):  # every series from the start (a bounded set)
    for _result in ("accepted", "rejected"):
        EVENTS.labels(_result, _type)


class EventSink(Protocol):
    """Where accepted events go (the broker): returns once every one is acknowledged."""

    async def publish(
        self,
        events: Sequence[AcceptedEvent],
        received_at: str,
        source: str,
        authority: Authority,
    ) -> None: ...


async def accept_events(
    payload: object,
    speaker: Speaker,
    received: datetime,
    max_age: timedelta | None,
    limiter: TokenBucket,
    sink: EventSink,
) -> Screening:
    """Valid, permitted events of a batch are accepted even if others are not. Every event sent
    costs the key (or the token's user) one rate token — refused ones too: screening them is
    work, and a flood of invalid events must meet the same 429 — and over its rate nothing is
    published (429 with Retry-After)."""
    screening = screen(payload, WindowContext(received, max_age, MAX_FUTURE), speaker.judge)
    sent = len(screening.accepted) + len(screening.rejected)
    if sent:
        wait_s = limiter.take(speaker.rate_key, speaker.rate_per_s, sent)
        if wait_s > 0:
            whose = "this user's" if speaker.user_id is not None else "this key's"
            raise RateLimited(
                f"over {whose} rate of {speaker.rate_per_s:g} events/s (refused events count)",
                retry_after_s=int(wait_s + 0.999),
            )
    if screening.accepted:
        await sink.publish(
            screening.accepted, received.isoformat(), speaker.source, speaker.authority
        )
    for item in screening.accepted:
        EVENTS.labels("accepted", item.event.type).inc()
    for rej in screening.rejected:
        EVENTS.labels("rejected", rej.type).inc()
    return screening
