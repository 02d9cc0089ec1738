"""When a settlement that failed is tried again (SPEC §16): exponential backoff, capped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Backoff:
    """`base_s` after the first failure, doubling with each further one, at most `cap_s`."""

    base_s: float = 30.0
    cap_s: float = 3600.0

    def delay(self, attempts: int) -> timedelta:
        """How long to wait after the `attempts`-th consecutive failure (attempts ≥ 1)."""
        exponent = min(max(attempts, 1) - 1, 64)  # 2**64 × base is past any cap
        return timedelta(seconds=min(self.cap_s, self.base_s * 2.0**exponent))


@dataclass(frozen=True, slots=True)
class PendingRetry:
    """A failed settlement: the version it failed with and when it is tried again."""

    version: int
    next_attempt_at: datetime

    def waits(self, now: datetime, version: int) -> bool:
        """Not due yet — unless a new version went live since, which may have fixed it."""
        return self.next_attempt_at > now and self.version == version
