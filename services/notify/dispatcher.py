"""Sends due notifications (SPEC §6): window, TTL, opt-out and the daily cap decided in one
transaction per pass; the provider call happens outside it; retries back off with jitter; the
last failure goes to engage.notify.dlq with the reason.

Every replica runs a dispatcher; rows are claimed with FOR UPDATE SKIP LOCKED, so a message is
handled by one of them at a time. A message left `sending` by a crash is picked up again after a
lease (the provider may then see it twice: at-least-once towards the SMSC, as SMPP offers no
idempotency key).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.domain.delivery import CAP_USED_UP, channels_for, gives_slot_back, next_attempt
from services.notify.domain.policy import (
    MAX_ATTEMPTS,
    Decision,
    Policy,
    decide,
    local_day,
    policy_for,
)
from services.notify.domain.templates import (
    CATEGORIES,
    TemplateError,
    in_locale,
    locales_to_try,
    render,
)
from services.notify.providers.base import Provider, ProviderError, Throttled
from services.notify.store import notifications as store
from services.notify.store.notifications import NotificationRow
from services.notify.usecases.receipts import settle_receipts
from shared.auth import TokenBucket
from shared.topics import NOTIFY_DLQ

log = logging.getLogger(__name__)

NOTIFICATIONS = Counter(
    "engage_notifications_total",
    "Notifications reaching a status, by channel, category and status.",
    ["channel", "category", "status"],
)
PROVIDER_LATENCY = Histogram(
    "engage_provider_latency_seconds",
    "Time a provider took to accept (or refuse) a message.",
    ["provider", "outcome"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WAITING = Gauge("engage_notify_waiting", "Notifications waiting to be sent, by status.", ["status"])
DLQ = Counter("engage_notify_dead_letters_total", "Notifications sent to the DLQ.", ["category"])
CAP_SUPPRESSED = Counter(
    "engage_notify_cap_suppressed_total",
    "Notifications suppressed because the user's daily cap was used up.",
    ["category"],
)


@dataclass(slots=True)
class _Send:
    row: NotificationRow
    bodies: dict[str, str]  # channel → rendered text, in fallback order


@dataclass(frozen=True, slots=True)
class _Sent:
    row: NotificationRow
    channel: str
    body: str
    status: str  # sent, or delivered when the provider confirmed at once
    provider: str
    message_id: str


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        providers: dict[str, Provider],
        producer: AIOKafkaProducer,
        tz: ZoneInfo,
        rates: dict[str, float],
        batch: int = 200,
        interval_s: float = 0.2,
        retry_base_s: float = 2.0,
        max_attempts: int = MAX_ATTEMPTS,
        concurrency: int = 32,
        sending_lease_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rnd: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._providers = providers
        self._producer = producer
        self._tz = tz
        self._rates = rates
        self._batch = batch
        self._interval_s = interval_s
        self._retry_base_s = retry_base_s
        self._max_attempts = max_attempts
        self._concurrency = concurrency
        self._lease = timedelta(seconds=sending_lease_s)
        self._clock = clock
        self._rnd = rnd or random.Random()
        self._bucket = TokenBucket(burst_s=1.0, min_burst=1.0)
        self._paused_until = 0.0
        # Zero series from the start for what can go wrong, so rates and alerts see them.
        for category in CATEGORIES:
            DLQ.labels(category)
            CAP_SUPPRESSED.labels(category)
        for provider in providers.values():
            PROVIDER_LATENCY.labels(provider.name, "error")

    async def run(self) -> None:
        last_gauge = 0.0
        while True:
            try:
                handled = await self.dispatch_once()
                if time.monotonic() - last_gauge > 5:
                    await self._refresh_gauges()
                    last_gauge = time.monotonic()
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("dispatch pass failed; retrying", extra={"error": repr(exc)[:300]})
                handled = 0
            if handled == 0:
                await asyncio.sleep(self._interval_s)

    async def dispatch_once(self) -> int:
        """One pass over due messages; returns how many were handled."""
        if (wait := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)  # a provider throttled us: back-pressure, not drops
        now = self._clock()
        sends: list[_Send] = []
        async with self._sessions() as session, session.begin():
            rows = await store.claim_due(session, now, self._batch, self._lease)
            if not rows:
                return 0
            policies = await store.policies(session)
            out = await store.opted_out(session, [r.user_id for r in rows])
            for row in rows:
                policy = policy_for(policies, row.category)
                send = await self._decide(session, row, policy, now, row.user_id in out)
                if send is not None:
                    sends.append(send)
        gate = asyncio.Semaphore(self._concurrency)

        async def deliver(send: _Send) -> _Sent | None:
            async with gate:
                return await self._deliver(send)

        sent = [x for x in await asyncio.gather(*(deliver(s) for s in sends)) if x is not None]
        if sent:
            await self._record_sent_retrying(sent)
        return len(rows)

    async def _record_sent_retrying(self, sent: list[_Sent]) -> None:
        """The providers took these messages: keep trying to record that while the database is
        unreachable (a restart), for up to half the lease; after it they go out again."""
        deadline = time.monotonic() + self._lease.total_seconds() / 2
        delay = 0.2
        while True:
            try:
                await self._record_sent(sent)
                return
            except (OperationalError, DBAPIError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("recording sends failed; retrying", extra={"error": repr(exc)[:300]})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _record_sent(self, sent: list[_Sent]) -> None:
        """The pass's accepted messages in one transaction; receipts that came first apply."""
        early: list[store.ReceiptChange] = []
        async with self._sessions() as session, session.begin():
            providers = sorted({x.provider for x in sent})
            for provider in providers:
                ids = sorted(x.message_id for x in sent if x.provider == provider)
                await store.lock_messages(session, provider, ids)
            await store.record_sent(
                session,
                [(x.row.id, x.status, x.body, x.channel, x.provider, x.message_id,
                  x.row.attempts + 1) for x in sent],
            )  # fmt: skip
            for provider in providers:
                ids = [x.message_id for x in sent if x.provider == provider]
                early += await settle_receipts(session, provider, ids)
        for x in sent:
            NOTIFICATIONS.labels(x.channel, x.row.category, x.status).inc()
        for r in early:
            NOTIFICATIONS.labels(r.channel, r.category, r.status).inc()

    async def _decide(
        self,
        session: AsyncSession,
        row: NotificationRow,
        policy: Policy,
        now: datetime,
        opted_out: bool,
    ) -> _Send | None:
        d = decide(policy, now, row.expires_at, self._tz, opted_out)
        if d.ends:
            await self._finish(session, row, d)
            return None
        if d.action == "defer":
            await store.update(session, row.id, status=d.status, reason=d.reason,
                               not_before=d.not_before)  # fmt: skip
            if row.status != d.status:
                NOTIFICATIONS.labels(row.channel, row.category, d.status).inc()
            return None
        if row.cap_day is None:  # a retried message keeps the slot it took
            day = local_day(now, self._tz)
            if not await store.take_cap_slot(
                session, row.user_id, day, row.category, policy.daily_cap
            ):
                await self._finish(session, row, CAP_USED_UP)
                CAP_SUPPRESSED.labels(row.category).inc()
                return None
            row = replace(row, cap_day=day)
        try:
            bodies = await self._render(session, row)
        except TemplateError as exc:
            await self._finish(session, row, Decision("fail", f"template: {exc}"))
            await self._dead_letter(row, f"template: {exc}")
            return None
        await store.update(session, row.id, status=d.status, cap_day=row.cap_day, reason=None)
        return _Send(row, bodies)

    async def _render(self, session: AsyncSession, row: NotificationRow) -> dict[str, str]:
        channels = channels_for(row.channel)
        bodies: dict[str, str] = {}
        for channel in channels:
            texts = await store.template_texts(
                session, row.template, channel, locales_to_try(row.locale)
            )
            if (template := in_locale(texts, row.locale)) is not None:
                bodies[channel] = render(template, row.params)
        if not bodies:
            raise TemplateError("template", f"no template '{row.template}' for {list(channels)}")
        return bodies

    async def _finish(self, session: AsyncSession, row: NotificationRow, end: Decision) -> None:
        """An end state; an undeliverable message gives its cap slot back."""
        await store.update(session, row.id, status=end.status, reason=end.reason)
        if row.cap_day is not None and gives_slot_back(end.status):
            await store.release_cap_slot(session, row.user_id, row.cap_day, row.category)
        NOTIFICATIONS.labels(row.channel, row.category, end.status).inc()

    async def _deliver(self, send: _Send) -> _Sent | None:
        """Try the channels in order; the accepted send is returned for recording, a failure
        is requeued with backoff or ends in the DLQ here."""
        row = send.row
        error: ProviderError | None = None
        for channel, body in send.bodies.items():  # the preferred channel, then the fallback
            provider = self._providers[channel]
            await self._pace(provider.name)
            started = time.perf_counter()
            try:
                result = await provider.send(row.id, row.user_id, body)
            except ProviderError as exc:
                PROVIDER_LATENCY.labels(provider.name, "error").observe(
                    time.perf_counter() - started
                )
                error = exc
                if isinstance(exc, Throttled):
                    self._paused_until = time.monotonic() + 1.0
                    break  # the same channel again later, not the fallback
                continue
            PROVIDER_LATENCY.labels(provider.name, "ok").observe(time.perf_counter() - started)
            status = "delivered" if result.delivered else "sent"
            return _Sent(row, channel, body, status, result.provider, result.message_id)
        assert error is not None
        attempts = row.attempts + 1
        retry_at = next_attempt(
            attempts, error.retryable, self._max_attempts, self._clock(), self._retry_base_s,
            self._rnd,
        )  # fmt: skip
        async with self._sessions() as session, session.begin():
            if retry_at is not None:
                await store.update(session, row.id, status="queued", attempts=attempts,
                                   reason=error.reason, not_before=retry_at)  # fmt: skip
                return None
            await store.update(session, row.id, attempts=attempts)
            await self._finish(session, row, Decision("fail", error.reason))
        await self._dead_letter(row, error.reason)
        return None

    async def _pace(self, provider: str) -> None:
        """The provider's send rate: wait for a token (back-pressure on the whole pass)."""
        rate = self._rates.get(provider, 0.0)
        if rate <= 0:
            return
        for _ in range(1000):
            wait = self._bucket.take(provider, rate, 1)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _dead_letter(self, row: NotificationRow, reason: str) -> None:
        DLQ.labels(row.category).inc()
        doc = {k: (str(v) if isinstance(v, datetime) else v) for k, v in asdict(row).items()}
        await (
            await self._producer.send(
                NOTIFY_DLQ,
                orjson.dumps({"notification": doc, "reason": reason}, default=str),
                key=row.user_id.encode(),
            )
        )

    async def _refresh_gauges(self) -> None:
        async with self._sessions() as session:
            found = await store.waiting_counts(session)
        for status in ("queued", "deferred", "sending"):
            WAITING.labels(status).set(found.get(status, 0))
