"""Send policies (SPEC §6): daily cap per user in the user's local day, send window, time to
live, marketing (opt-outs apply) or transactional. Pure decisions; the store performs them."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Policy:
    category: str
    daily_cap: int = 3
    window_start: time = time(8, 0)
    window_end: time = time(21, 0)  # exclusive; equal to start means "always open"
    ttl: timedelta = timedelta(hours=48)
    marketing: bool = True

    def in_window(self, at: datetime, tz: ZoneInfo) -> bool:
        if self.window_start == self.window_end:
            return True
        t = at.astimezone(tz).time()
        if self.window_start < self.window_end:
            return self.window_start <= t < self.window_end
        return t >= self.window_start or t < self.window_end  # a window across midnight

    def next_window_start(self, at: datetime, tz: ZoneInfo) -> datetime:
        """`at` itself if the window is open, else when it next opens (local time)."""
        if self.in_window(at, tz):
            return at
        local = at.astimezone(tz)
        start = datetime.combine(local.date(), self.window_start, tzinfo=tz)
        return start if start > local else start + timedelta(days=1)

    def expires_at(self, due: datetime) -> datetime:
        """A message lives for the time to live counted from when it is first due."""
        return due + self.ttl


def policy_for(policies: Mapping[str, Policy], category: str) -> Policy:
    """The category's stored policy, else the defaults of SPEC §6."""
    return policies.get(category) or Policy(category)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


_STATUS_AFTER = {
    "send": "sending",
    "defer": "deferred",
    "expire": "expired",
    "suppress": "suppressed",
    "fail": "failed",
}


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # "send", "defer", "expire", "suppress", "fail"
    reason: str = ""
    not_before: datetime | None = None

    @property
    def status(self) -> str:
        """The status the message moves to."""
        return _STATUS_AFTER[self.action]

    @property
    def ends(self) -> bool:
        """The message will never be sent (expired, suppressed or failed)."""
        return self.action in ("expire", "suppress", "fail")


def decide(
    policy: Policy,
    now: datetime,
    expires_at: datetime,
    tz: ZoneInfo,
    opted_out: bool,
) -> Decision:
    """What to do with a due message now (the cap is taken separately, atomically)."""
    if now >= expires_at:
        return Decision("expire", "ttl")
    if policy.marketing and opted_out:
        return Decision("suppress", "opt_out")
    if not policy.in_window(now, tz):
        opens = policy.next_window_start(now, tz)
        if opens >= expires_at:
            return Decision("expire", "ttl_before_window")
        return Decision("defer", "outside_window", opens)
    return Decision("send")


def backoff(
    attempt: int, base_s: float = 2.0, cap_s: float = 300.0, rnd: random.Random | None = None
) -> timedelta:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempt)]."""
    r = rnd or random
    return timedelta(seconds=r.uniform(0, min(cap_s, base_s * 2**attempt)))
