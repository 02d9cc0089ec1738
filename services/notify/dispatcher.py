"""Sends due notifications (SPEC §6, §11): window, TTL, opt-out and the daily cap decided in one
transaction per pass; the provider call happens outside it; retries back off with jitter; the
last failure goes to engage.notify.dlq with the reason.

Every replica runs a dispatcher; rows are claimed with FOR UPDATE SKIP LOCKED, so a message is
handled by one of them at a time, and each user by one of them per pass (an advisory lock), so
that a user's waiting reward notices are composed into one digest (domain/digests.py). A digest
is claimed, marked `sending` and recorded in the same transactions as its members. A message
left `sending` by a crash is picked up again after a lease, as the same message (same id and
slot; the provider may then see it twice: at-least-once towards the SMSC, as SMPP offers no
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

from services.notify.domain.broadcast import broadcast_of
from services.notify.domain.delivery import channels_for, gives_slot_back, next_attempt, over_cap
from services.notify.domain.digests import DIGEST_TEMPLATE, Message, Pending, compose, digest_params
from services.notify.domain.fulfilment import render_notice
from services.notify.domain.policy import (
    MAX_ATTEMPTS,
    Decision,
    Policy,
    decide,
    local_day,
    policy_for,
)
from services.notify.domain.templates import CATEGORIES, TemplateError, in_locale, locales_to_try
from services.notify.providers.base import Provider, ProviderError, Throttled
from services.notify.store import notifications as store
from services.notify.store import templates
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
CAP_DEFERRED = Counter(
    "engage_notify_cap_deferred_total",
    "Notifications deferred to the user's next local day because their daily cap was used up.",
    ["category"],
)
DIGESTS = Counter(
    "engage_notify_digests_total", "Reward digests handed to a provider (one cap slot each)."
)


@dataclass(slots=True)
class _Send:
    message_id: int  # the provider's id: a single notice's own, a digest's lead member's
    members: list[NotificationRow]  # one, or the notices of a digest
    bodies: dict[str, str]  # channel → rendered text, in fallback order

    @property
    def row(self) -> NotificationRow:
        return self.members[0]


@dataclass(frozen=True, slots=True)
class _Sent:
    members: list[NotificationRow]
    channel: str
    body: str
    status: str  # sent, or delivered when the provider confirmed at once
    provider: str
    message_id: str


def _pending(row: NotificationRow) -> Pending:
    return Pending(row.id, row.template, row.category, row.channel, row.locale, row.priority,
                   row.digest_id, row.cap_day)  # fmt: skip


def _attempts(members: list[NotificationRow]) -> int:
    return max(m.attempts for m in members)


async def _approved_texts(
    session: AsyncSession, row: NotificationRow
) -> dict[str, dict[str, str]] | None:
    """A broadcast message's texts as frozen at its approval, by channel and locale (SPEC
    §15): never the live template. None for other messages (and broadcasts approved before
    texts were frozen)."""
    broadcast_id = broadcast_of(row.source)
    if broadcast_id is None:
        return None
    frozen = await templates.frozen(session, broadcast_id)
    if not frozen:
        return None
    texts: dict[str, dict[str, str]] = {}
    for t in frozen:
        texts.setdefault(t.channel, {})[t.locale] = t.text
    return texts


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
        gather_s: float = 0.0,
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
        self._gather = timedelta(seconds=gather_s)
        self._clock = clock
        self._rnd = rnd or random.Random()
        self._bucket = TokenBucket(burst_s=1.0, min_burst=1.0)
        self._paused_until = 0.0
        # Zero series from the start for what can go wrong, so rates and alerts see them.
        for category in CATEGORIES:
            DLQ.labels(category)
            CAP_SUPPRESSED.labels(category)
            CAP_DEFERRED.labels(category)
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
            claimed = await store.claim_due(session, now, self._batch, self._lease)
            if not claimed:
                return 0
            # Users another replica is composing right now wait for its pass to end.
            mine = await store.lock_users(session, [r.user_id for r in claimed])
            rows = [r for r in claimed if r.user_id in mine]
            rows += await store.claim_gathered(
                session, sorted(mine), [r.id for r in rows], now, now + self._gather,
                self._batch, self._lease,
            )  # fmt: skip
            if not rows:
                return 0
            policies = await store.policies(session)
            out = await store.opted_out(session, [r.user_id for r in rows])
            by_user: dict[str, list[NotificationRow]] = {}
            for row in rows:
                by_user.setdefault(row.user_id, []).append(row)
            for user, found in by_user.items():
                sends += await self._plan_user(session, found, policies, now, user in out)
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
                [(m.id, x.status, x.body, x.channel, x.provider, x.message_id,
                  _attempts(x.members) + 1) for x in sent for m in x.members],
            )  # fmt: skip
            for provider in providers:
                ids = [x.message_id for x in sent if x.provider == provider]
                early += await settle_receipts(session, provider, ids)
        for x in sent:
            for m in x.members:
                NOTIFICATIONS.labels(x.channel, m.category, x.status).inc()
        for r in early:
            NOTIFICATIONS.labels(r.channel, r.category, r.status).inc()

    async def _plan_user(
        self,
        session: AsyncSession,
        rows: list[NotificationRow],
        policies: dict[str, Policy],
        now: datetime,
        opted_out: bool,
    ) -> list[_Send]:
        """One user's due notices: each decided on its own (TTL, opt-out, window), those ready
        composed into messages, which take cap slots in priority order (SPEC §11)."""
        ready: dict[int, NotificationRow] = {}
        for row in rows:
            d = decide(policy_for(policies, row.category), now, row.expires_at, self._tz, opted_out)
            if d.ends:  # a digest member alone does not give its shared slot back
                await self._finish(session, [row], d, release=row.digest_id is None)
            elif d.action == "defer":
                await self._wait(session, [row], d)
            else:
                ready[row.id] = row
        day = local_day(now, self._tz)
        full: set[str] = set()  # categories whose cap this user has used up today
        sends: list[_Send] = []
        for message in compose(_pending(r) for r in ready.values()):
            members = [ready[i] for i in message.members]
            policy = policy_for(policies, message.category)
            cap_day = next((m.cap_day for m in members if m.cap_day is not None), None)
            if not message.holds_slot:
                if message.category in full or not await store.take_cap_slot(
                    session, members[0].user_id, day, message.category, policy.daily_cap
                ):
                    full.add(message.category)
                    await self._over_cap(session, members, policy, now)
                    continue
                cap_day = day
            digest_id = message.message_id if message.digest else None
            members = [replace(m, cap_day=cap_day, digest_id=digest_id) for m in members]
            try:
                bodies = await self._render(session, message, members, now)
            except TemplateError as exc:
                await self._finish(session, members, Decision("fail", f"template: {exc}"))
                for m in members:
                    await self._dead_letter(m, f"template: {exc}")
                continue
            await store.update_many(session, [m.id for m in members], status="sending",
                                    cap_day=cap_day, digest_id=digest_id, reason=None)  # fmt: skip
            sends.append(_Send(message.message_id, members, bodies))
        return sends

    async def _over_cap(
        self, session: AsyncSession, members: list[NotificationRow], policy: Policy, now: datetime
    ) -> None:
        d = over_cap(policy, now, self._tz)
        if d.ends:
            await self._finish(session, members, d)
            CAP_SUPPRESSED.labels(policy.category).inc(len(members))
        else:
            await self._wait(session, members, d)
            CAP_DEFERRED.labels(policy.category).inc(len(members))

    async def _wait(self, session: AsyncSession, rows: list[NotificationRow], d: Decision) -> None:
        await store.update_many(session, [r.id for r in rows], status=d.status, reason=d.reason,
                                not_before=d.not_before)  # fmt: skip
        for row in rows:
            if row.status != d.status:
                NOTIFICATIONS.labels(row.channel, row.category, d.status).inc()

    async def _render(
        self, session: AsyncSession, message: Message, members: list[NotificationRow], now: datetime
    ) -> dict[str, str]:
        """The message's text per channel, as true on the user's local day of sending."""
        lead = members[0]
        today = local_day(now, self._tz)
        template, params = lead.template, lead.params
        if message.digest:
            template = DIGEST_TEMPLATE
            params = digest_params([m.params for m in members], lead.locale, today)
        bodies: dict[str, str] = {}
        approved = None if message.digest else await _approved_texts(session, lead)
        for channel in channels_for(lead.channel):
            if approved is not None:  # what the broadcast's approver approved, as it was
                if (text := in_locale(approved.get(channel, {}), lead.locale)) is not None:
                    bodies[channel] = text
                continue
            texts = await store.template_texts(
                session, template, channel, locales_to_try(lead.locale)
            )
            if (text := in_locale(texts, lead.locale)) is not None:
                bodies[channel] = render_notice(text, params, channel, lead.locale, today)
        if not bodies:
            raise TemplateError(
                "template", f"no template '{template}' for {list(channels_for(lead.channel))}"
            )
        return bodies

    async def _finish(
        self,
        session: AsyncSession,
        rows: list[NotificationRow],
        end: Decision,
        release: bool = True,
    ) -> None:
        """An end state for the members of one message; an undeliverable message gives its cap
        slot back (once: a digest's members share it)."""
        await store.update_many(session, [r.id for r in rows], status=end.status, reason=end.reason)
        cap_day = next((r.cap_day for r in rows if r.cap_day is not None), None)
        if release and cap_day is not None and gives_slot_back(end.status):
            await store.release_cap_slot(session, rows[0].user_id, cap_day, rows[0].category)
        for row in rows:
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
                result = await provider.send(send.message_id, row.user_id, body)
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
            if len(send.members) > 1:
                DIGESTS.inc()
            status = "delivered" if result.delivered else "sent"
            return _Sent(send.members, channel, body, status, result.provider, result.message_id)
        assert error is not None
        attempts = _attempts(send.members) + 1
        retry_at = next_attempt(
            attempts, error.retryable, self._max_attempts, self._clock(), self._retry_base_s,
            self._rnd,
        )  # fmt: skip
        ids = [m.id for m in send.members]
        async with self._sessions() as session, session.begin():
            if retry_at is not None:  # the same message again: same members, id and slot
                await store.update_many(session, ids, status="queued", attempts=attempts,
                                        reason=error.reason, not_before=retry_at)  # fmt: skip
                return None
            await store.update_many(session, ids, attempts=attempts)
            await self._finish(session, send.members, Decision("fail", error.reason))
        for m in send.members:
            await self._dead_letter(m, error.reason)
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
