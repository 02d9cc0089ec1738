"""Online sessions (SPEC §4): start = earliest login, end = latest logout, split across days.

A session is the (user, session_id) pair. Its client is the client of the earliest login (ties
broken by event_id, so arrival order never matters). It counts once both ends have arrived; an
end before the start counts nothing; its length is capped at 24 h from the start. SMS sessions
carry no online time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.scoring.domain.periods import local_day, start_of_day

MAX_SESSION = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class SessionState:
    start_at: datetime | None = None
    start_client: str | None = None
    start_event_id: str | None = None
    end_at: datetime | None = None

    def with_login(self, at: datetime, client: str, event_id: str) -> SessionState:
        if self.start_at is None or (at, event_id) < (self.start_at, self.start_event_id or ""):
            return replace(self, start_at=at, start_client=client, start_event_id=event_id)
        return self

    def with_logout(self, at: datetime) -> SessionState:
        if self.end_at is None or at > self.end_at:
            return replace(self, end_at=at)
        return self


@dataclass(frozen=True, slots=True)
class OnlineTime:
    """Seconds online on one local day, by client."""

    pc: int = 0
    mobile: int = 0


def online_time_by_day(state: SessionState, tz: ZoneInfo) -> dict[date, OnlineTime]:
    """The session's online seconds on each local day it touches (empty if it counts nothing)."""
    start, end, client = state.start_at, state.end_at, state.start_client
    if start is None or end is None or end <= start or client not in ("pc", "mobile"):
        return {}
    end = min(end, start + MAX_SESSION)
    out: dict[date, OnlineTime] = {}
    cursor = start
    while cursor < end:
        day = local_day(cursor, tz)
        boundary = min(end, start_of_day(day + timedelta(days=1), tz))
        seconds = int((boundary - cursor).total_seconds())
        prev = out.get(day, OnlineTime())
        out[day] = (
            OnlineTime(prev.pc + seconds, prev.mobile)
            if client == "pc"
            else OnlineTime(prev.pc, prev.mobile + seconds)
        )
        cursor = boundary
    return out
