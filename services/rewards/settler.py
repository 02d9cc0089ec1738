"""Runs due settlements: on a timer, and on demand through the admin API.

Settlement reads rewards' stored metric values, so it first waits until every metric record
published before it started is applied (stored offsets ≥ the topic's end offsets then); the
grace of SPEC §5 covers events that are still on their way through scoring.

Each period settles in its own transaction. One that raises — a bug, a data error — is recorded
as failed with its reason and retried with backoff, and the pass goes on with the next (SPEC
§16); only a transient fault (the database unreachable) defers the whole pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.consumers.metrics import MetricsConsumer
from services.rewards.domain.retry import Backoff
from services.rewards.store.settle import (
    Due,
    Failed,
    Settled,
    count_failure,
    due_settlements,
    record_failure,
    refresh_gauges,
    settle,
)
from shared.consumer import stored_offsets
from shared.errors import Unavailable
from shared.failures import failure_reason, is_transient

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SettlementRun:
    settled: list[Settled] = field(default_factory=list)
    already_settled: int = 0  # by another replica meanwhile
    failed: list[Failed] = field(default_factory=list)  # recorded, to be retried


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

    async def run_once(self) -> SettlementRun:
        async with self._lock:
            run = SettlementRun()
            async with self._sessions() as session, session.begin():
                plan = await due_settlements(session, self._clock(), self._tz, self._backoff)
            for failed in plan.unlisted:
                self._failed(run, failed)
            if plan.due and not await self.metrics_caught_up():
                raise Unavailable(
                    "settlement waits until rewards has applied the published metrics",
                    retry_after_s=10,
                )
            for item in plan.due:
                try:
                    done = await settle(self._sessions, item, self._tz, self._clock())
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    self._failed(run, await self._record_failure(item, exc), exc)
                    continue
                if done is None:
                    run.already_settled += 1
                else:
                    run.settled.append(done)
                    log.info(
                        "period settled",
                        extra={
                            "campaign": done.campaign_id,
                            "rule": done.rule_id,
                            "period": done.period,
                            "grants": done.grants,
                            "seconds": round(done.seconds, 3),
                        },
                    )
            async with self._sessions() as session:
                await refresh_gauges(session)
            return run

    async def _record_failure(self, item: Due, exc: Exception) -> Failed:
        async with self._sessions() as session, session.begin():
            return await record_failure(
                session,
                item.campaign.campaign_id,
                item.rule.id,
                item.period.label,
                item.campaign.version,
                failure_reason(exc),
                self._clock(),
                self._backoff,
            )

    @staticmethod
    def _failed(run: SettlementRun, failed: Failed, exc: Exception | None = None) -> None:
        run.failed.append(failed)
        count_failure(failed)
        log.error(
            "settlement failed; retried later",
            exc_info=exc,
            extra={
                "campaign": failed.campaign_id,
                "rule": failed.rule_id,
                "period": failed.period,
                "attempts": failed.attempts,
                "next_attempt_at": failed.next_attempt_at.isoformat(),
                "reason": failed.reason,
            },
        )

    async def run(self) -> None:
        """Settle every `interval_s` (0: only on demand); refresh the budget gauges either way."""
        while True:
            try:
                if self._interval_s > 0:
                    await self.run_once()
                async with self._sessions() as session:
                    await refresh_gauges(session)
            except (Unavailable, OperationalError, DBAPIError, OSError) as exc:
                log.warning("settlement pass deferred", extra={"error": repr(exc)[:300]})
            await asyncio.sleep(self._interval_s if self._interval_s > 0 else 15.0)
