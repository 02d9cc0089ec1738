"""Screening a request body into accepted and rejected events (SPEC §3). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.contract import (
    EVENT_TYPES,
    MAX_BATCH_EVENTS,
    Event,
    Rejection,
    WindowContext,
    validate_event,
)
from shared.errors import BadRequest, PayloadTooLarge


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    index: int
    raw: dict[str, Any]
    event: Event


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    index: int
    event_id: str | None
    code: str
    message: str
    type: str  # the event's type if it named a known one, else "invalid" (a bounded label)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event_id": self.event_id,
            "code": self.code,
            "message": self.message,
        }


@dataclass(slots=True)
class Screening:
    accepted: list[AcceptedEvent] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)


def _items_of(payload: object) -> list[object]:
    """A single event object, or `{"events": [...]}` with 1–500 events."""
    if isinstance(payload, dict) and "events" in payload and "type" not in payload:
        extra = sorted(set(payload) - {"events"})
        if extra:
            raise BadRequest(
                f"unknown top-level field(s) in batch: {', '.join(extra)}", code="unknown_field"
            )
        items = payload["events"]
        if not isinstance(items, list):
            raise BadRequest("events: must be an array", code="invalid_field")
        if not items:
            raise BadRequest("events: must contain at least one event", code="invalid_field")
        if len(items) > MAX_BATCH_EVENTS:
            raise PayloadTooLarge(
                f"events: {len(items)} events; at most {MAX_BATCH_EVENTS} per request",
                code="too_many_events",
            )
        return items
    if isinstance(payload, dict):
        return [payload]
    raise BadRequest('body must be an event object or {"events": [...]}', code="invalid_body")


# Whether the request's author may post a valid event: None, or why not (SPEC §14).
Permit = Callable[[Event], Rejection | None]


def screen(payload: object, context: WindowContext, permit: Permit | None = None) -> Screening:
    """Validate every event of a request and check that its author may post it; valid,
    permitted ones are accepted even if others are not."""
    result = Screening()
    for index, item in enumerate(_items_of(payload)):
        outcome = validate_event(item, context)
        if permit is not None and not isinstance(outcome, Rejection):
            outcome = permit(outcome) or outcome
        if isinstance(outcome, Rejection):
            event_id = item.get("event_id") if isinstance(item, dict) else None
            kind = item.get("type") if isinstance(item, dict) else None
            result.rejected.append(
                RejectedEvent(
                    index,
                    event_id if isinstance(event_id, str) else None,
                    outcome.code,
                    outcome.message,
                    kind if isinstance(kind, str) and kind in EVENT_TYPES else "invalid",
                )
            )
        else:
            assert isinstance(item, dict)
            result.accepted.append(AcceptedEvent(index, item, outcome))
    return result
