"""Broadcasts (SPEC §6): a template sent to a segment, fanned out at a paced rate across the
send window rather than in a burst."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.notify.domain.policy import Policy


def paced_schedule(
    count: int, start: datetime, rate_per_s: float, policy: Policy, tz: ZoneInfo
) -> list[datetime]:
    """When each of `count` messages becomes due: `rate_per_s` apart, only inside the send
    window — what does not fit before it closes continues when it next opens."""
    step = timedelta(seconds=1 / rate_per_s)
    out: list[datetime] = []
    at = policy.next_window_start(start, tz)
    for _ in range(count):
        if not policy.in_window(at, tz):
            at = policy.next_window_start(at, tz)
        out.append(at)
        at += step
    return out
