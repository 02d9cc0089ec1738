"""Test builders: `make_event(type=..., **overrides)` instead of copy-pasted dicts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

REQUIRED: dict[str, dict[str, Any]] = {
    "message": {"client": "mobile", "group_id": "g1"},
    "login": {"client": "pc", "session_id": "s1"},
    "logout": {"client": "pc", "session_id": "s1"},
    "group_created": {"group_id": "g1", "name": "Hikers", "province": "GD"},
    "group_join": {"group_id": "g1"},
    "group_leave": {"group_id": "g1"},
    "group_dissolved": {"group_id": "g1"},
    "group_owner_changed": {"group_id": "g1"},
    "points": {"delta": 10},
    "bonus_card": {"group_id": "g1", "points": 5},
    "friend_added": {"friend_user_id": "u2"},
    "checkin": {"campaign_id": "daily-checkin"},
}
NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


def make_event(
    type: str = "message", *, at: datetime | None = None, **overrides: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": type,
        "occurred_at": (at or datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "user_id": "u1",
        **REQUIRED.get(type, {}),
    }
    for key, value in overrides.items():
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return event
