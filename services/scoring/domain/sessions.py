"""Online sessions (SPEC §4): start = earliest login, end = latest logout, split across days.

A session is the (user, session_id) pair. Its client is the client of the earliest login (ties
broken by event_id, so arrival order never matters). It counts once both ends have arrived; an
end before the start counts nothing; its length is capped at 24 h from the start. SMS sessions
carry no online time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.scoring.domain.periods import local_day, start_of_day

MAX_SESSION = timedelta(hours=24)
ONLINE_CLIENTS = ("pc", "mobile")

SessionKey = tuple[str, str]  # (user_id, session_id)
UserDayKey = tuple[str, date]  # (user_id, local day)


@dataclass(slots=True)
class SessionFact:
    """One login or logout of a session, as it arrived."""

    user_id: str
    session_id: str
    kind: str  # "login" or "logout"
    at: datetime
    client: str
    event_id: str


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

    def with_fact(self, fact: SessionFact) -> SessionState:
        if fact.kind == "login":
            return self.with_login(fact.at, fact.client, fact.event_id)
        return self.with_logout(fact.at)


NO_SESSION = SessionState()


@dataclass(frozen=True, slots=True)
class OnlineTime:
    """Seconds online on one local day, by client (negative in a change: time taken back)."""

    pc: int = 0
    mobile: int = 0


NO_TIME = OnlineTime()


def online_time_by_day(state: SessionState, tz: ZoneInfo) -> dict[date, OnlineTime]:
    """The session's online seconds on each local day it touches (empty if it counts nothing).

    Whole seconds are taken by flooring the offset of each day boundary from the start, not
    each part (SPEC §9 "online seconds add up"): the days then sum exactly to the floor of the
    capped length.
    """
    start, end, client = state.start_at, state.end_at, state.start_client
    if start is None or end is None or end <= start or client not in ONLINE_CLIENTS:
        return {}
    end = min(end, start + MAX_SESSION)
    out: dict[date, OnlineTime] = {}
    cursor, counted = start, 0  # counted: whole seconds from the start to `cursor`, floored
    while cursor < end:
        day = local_day(cursor, tz)
        boundary = min(end, start_of_day(day + timedelta(days=1), tz))
        offset = _whole_seconds(boundary - start)
        seconds, counted, cursor = offset - counted, offset, boundary
        prev = out.get(day, NO_TIME)
        out[day] = (
            OnlineTime(prev.pc + seconds, prev.mobile)
            if client == "pc"
            else OnlineTime(prev.pc, prev.mobile + seconds)
        )
    return out


def _whole_seconds(span: timedelta) -> int:
    """Floor of a non-negative span in seconds, exact (no float rounding)."""
    return span // timedelta(seconds=1)


def online_time_change(
    before: SessionState, after: SessionState, tz: ZoneInfo
) -> dict[date, OnlineTime]:
    """What a session's new facts change in each day's online seconds (days with no change left
    out): a late login or logout can move time between days, add it, or take it back."""
    gained, lost = online_time_by_day(after, tz), online_time_by_day(before, tz)
    change: dict[date, OnlineTime] = {}
    for day in gained.keys() | lost.keys():
        g, lo = gained.get(day, NO_TIME), lost.get(day, NO_TIME)
        if g != lo:
            change[day] = OnlineTime(g.pc - lo.pc, g.mobile - lo.mobile)
    return change


def counted_session(state: SessionState, tz: ZoneInfo) -> tuple[date, str] | None:
    """Where a session counts in the business KPIs' `sessions` (SPEC §12): the local day of its
    start and its client, once both ends have arrived and the end is not before the start."""
    start, end, client = state.start_at, state.end_at, state.start_client
    if start is None or end is None or client is None or end < start:
        return None
    return local_day(start, tz), client


@dataclass(slots=True)
class SessionsUpdate:
    """Sessions after a batch's facts, and what they change in users' daily online time and
    counted sessions ((user, day) → client → ±1)."""

    states: dict[SessionKey, SessionState] = field(default_factory=dict)
    online_time: dict[UserDayKey, OnlineTime] = field(default_factory=dict)
    counted: dict[UserDayKey, dict[str, int]] = field(default_factory=dict)


def update_sessions(
    stored: Mapping[SessionKey, SessionState], facts: Iterable[SessionFact], tz: ZoneInfo
) -> SessionsUpdate:
    """Fold the facts into the stored sessions (absent: none yet); every touched session is in
    `states`, in key order."""
    by_key: dict[SessionKey, list[SessionFact]] = {}
    for fact in facts:
        by_key.setdefault((fact.user_id, fact.session_id), []).append(fact)
    update = SessionsUpdate()
    for key in sorted(by_key):
        before = stored.get(key, NO_SESSION)
        after = before
        for fact in by_key[key]:
            after = after.with_fact(fact)
        update.states[key] = after
        user_id = key[0]
        was, now = counted_session(before, tz), counted_session(after, tz)
        if was != now:
            for where, sign in ((was, -1), (now, 1)):
                if where is not None:
                    clients = update.counted.setdefault((user_id, where[0]), {})
                    clients[where[1]] = clients.get(where[1], 0) + sign
        for day, change in online_time_change(before, after, tz).items():
            prior = update.online_time.get((user_id, day))
            update.online_time[(user_id, day)] = (
                OnlineTime(prior.pc + change.pc, prior.mobile + change.mobile) if prior else change
            )
    return update
