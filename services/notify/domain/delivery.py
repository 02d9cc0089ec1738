"""How a due message is delivered (SPEC §6): the channels it tries, the daily cap slot it takes
and gives back, and what a failed send leads to. Pure decisions; the dispatcher performs them."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.notify.domain.policy import Decision, Policy, backoff

# IM first; when the IM platform refuses it, the same message goes out by SMS at once.
_FALLBACK = {"im": ("im", "sms"), "sms": ("sms",)}
# The end states in which a message was never delivered: its cap slot goes back to the user.
UNDELIVERED = frozenset({"failed", "expired", "suppressed"})
CAP_USED_UP = Decision("suppress", "daily_cap")


def channels_for(channel: str) -> tuple[str, ...]:
    """The channels a message tries, in order: its own, then the fallback."""
    return _FALLBACK.get(channel, (channel,))


def next_local_day(policy: Policy, now: datetime, tz: ZoneInfo) -> datetime:
    """When the user's next local day opens for sending: its midnight, or its window's start."""
    tomorrow = now.astimezone(tz).date() + timedelta(days=1)
    return policy.next_window_start(datetime.combine(tomorrow, time(0), tzinfo=tz), tz)


def over_cap(policy: Policy, now: datetime, tz: ZoneInfo) -> Decision:
    """A message that finds the user's cap used up (SPEC §11): a marketing one is suppressed;
    any other (every reward notice) waits for the user's next local day, never dropped."""
    if policy.marketing:
        return CAP_USED_UP
    return Decision("defer", "daily_cap", next_local_day(policy, now, tz))


def gives_slot_back(status: str) -> bool:
    """A message that took a cap slot and ends in `status` returns it: it was never delivered."""
    return status in UNDELIVERED


def next_attempt(
    attempts: int,
    retryable: bool,
    max_attempts: int,
    now: datetime,
    base_s: float,
    rnd: random.Random | None = None,
) -> datetime | None:
    """When to try a failed send again (backoff with jitter), or None: it has failed for good
    (no retry can help, or `max_attempts` are used up) and goes to the DLQ."""
    if not retryable or attempts >= max_attempts:
        return None
    return now + backoff(attempts, base_s, rnd=rnd)
