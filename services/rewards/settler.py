"""Runs due settlements: on a timer, and on demand through the admin API
(usecases/settlement.py settles; this loop decides when, one pass at a time per process).

Settlement reads rewards' stored metric values, so a pass first waits until every metric record
published before it started is applied (stored offsets ≥ the topic's end offsets then); the
grace of SPEC §5 covers events that are still on their way through scoring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.consumers.metrics import MetricsConsumer
from services.rewards.domain.retry import Backoff
from services.rewards.usecases.report import compact_pending
from services.rewards.usecases.settlement import SettlementRun, refresh_gauges, settle_due
from shared.consumer import stored_offsets
from shared.errors import Unavailable

log = logging.getLogger(__name__)


class Settler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        consumer: MetricsConsumer,
        tz: ZoneInfo,
        interval_s: float,
        catch_up_timeout_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backoff: Backoff | None = None,
    ) -> None:
        self._sessions = sessions
        self._consumer = consumer
        self._tz = tz
        self._interval_s = interval_s
        self._catch_up_timeout_s = catch_up_timeout_s
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._lock = asyncio.Lock()

    async def metrics_caught_up(self) -> bool:
        """Wait (bounded) until the metrics published so far are applied by this group."""
        deadline = time.monotonic() + self._catch_up_timeout_s
        while time.monotonic() < deadline:
            try:
                ends = await self._consumer.end_offsets()
            except Exception as exc:  # broker unreachable: report, settle later
                log.warning("end offsets unavailable", extra={"error": repr(exc)})
                ends = None
            if ends is not None:
                while time.monotonic() < deadline:
                    async with self._sessions() as session:
                        stored = await stored_offsets(session, self._consumer.topic)
                    if all(stored.get(p, 0) >= end for p, end in ends.items()):
                        return True
                    await asyncio.sleep(0.2)
                return False
            await asyncio.sleep(0.5)
        return False

    def _today(self) -> date:
        """The local date: grants are overdue after their fulfil-by day there."""
        return self._clock().astimezone(self._tz).date()

    async def run_once(self) -> SettlementRun:
        """One settlement pass (usecases/settlement.py), then the gauges refreshed."""
        async with self._lock:
            run = await settle_due(
                self._sessions, self._tz, self._clock, self._backoff, self.metrics_caught_up
            )
            await refresh_gauges(self._sessions, self._today())
            return run

    async def run(self) -> None:
        """Settle every `interval_s` (0: only on demand); refresh the gauges either way."""
        while True:
            try:
                if self._interval_s > 0:
                    await self.run_once()
                await refresh_gauges(self._sessions, self._today())
                await compact_pending(self._sessions)  # the campaign reports' kept counts
            except (Unavailable, OperationalError, DBAPIError, OSError) as exc:
                log.warning("settlement pass deferred", extra={"error": repr(exc)[:300]})
            await asyncio.sleep(self._interval_s if self._interval_s > 0 else 15.0)
