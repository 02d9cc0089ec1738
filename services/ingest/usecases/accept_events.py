"""Accepting a request's events (SPEC §3): screen them, charge the key's rate, publish the valid
ones and return only once the broker acknowledged them all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from prometheus_client import Counter

from services.ingest.domain.intake import AcceptedEvent, Screening, screen
from shared.auth import Principal, TokenBucket
from shared.contract import EVENT_TYPES, MAX_FUTURE, WindowContext
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
        self, events: Sequence[AcceptedEvent], received_at: str, source: str
    ) -> None: ...


async def accept_events(
    payload: object,
    principal: Principal,
    received: datetime,
    max_age: timedelta | None,
    limiter: TokenBucket,
    sink: EventSink,
) -> Screening:
    """Valid events of a batch are accepted even if others are not; they cost the key one rate
    token each, and over its rate nothing is published (429 with Retry-After)."""
    screening = screen(payload, WindowContext(received, max_age, MAX_FUTURE))
    if screening.accepted:
        wait_s = limiter.take(principal.key_id, principal.rate_per_s, len(screening.accepted))
        if wait_s > 0:
            raise RateLimited(
                f"over this key's rate of {principal.rate_per_s:g} events/s",
                retry_after_s=int(wait_s + 0.999),
            )
        await sink.publish(screening.accepted, received.isoformat(), principal.key_id)
    for item in screening.accepted:
        EVENTS.labels("accepted", item.event.type).inc()
    for rej in screening.rejected:
        EVENTS.labels("rejected", rej.type).inc()
    return screening
