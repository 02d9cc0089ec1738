"""Notifications as stored: enqueued once per (source, user, template), claimed by one
dispatcher at a time, capped per user and local day without ever exceeding the cap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.domain.notices import REWARD_TEMPLATE, ScheduledNotification
from services.notify.domain.policy import Policy
from shared.db import jsonb, lock_keys

SENDING_LEASE = timedelta(seconds=60)  # a 'sending' row older than this was left by a crash
COLUMNS = (
    "id, source, user_id, template, category, channel, locale, params, body, status, reason, "
    "not_before, expires_at, attempts, sent_channel, provider, provider_message_id, cap_day, "
    "created_at, updated_at, digest_id, priority, resent_from"
)


@dataclass(frozen=True, slots=True)
class NotificationRow:
    id: int
    source: str
    user_id: str
    template: str
    category: str
    channel: str
    locale: str
    params: dict[str, Any]
    body: str | None
    status: str
    reason: str | None
    not_before: datetime
    expires_at: datetime
    attempts: int
    sent_channel: str | None
    provider: str | None
    provider_message_id: str | None
    cap_day: date | None
    created_at: datetime
    updated_at: datetime
    digest_id: int | None = None  # the digest it went out in (its lead member's id)
    priority: int = 2
    resent_from: int | None = None


def _row(r: Row[Any]) -> NotificationRow:
    return NotificationRow(**{**r._mapping, "params": jsonb(r.params)})


async def enqueue(session: AsyncSession, items: list[ScheduledNotification]) -> int:
    """Queue new notifications; a (source, user, template) seen before is ignored. Returns how
    many were new."""
    return len(await _insert(session, items))


async def _insert(session: AsyncSession, items: list[ScheduledNotification]) -> list[int]:
    # A resend (resent_from) without a campaign of its own takes its original's campaign, rule
    # and period (SPEC §12: the campaign report counts it with the original's).
    if not items:
        return []
    rows = await session.execute(
        text("""
        INSERT INTO notifications (source, user_id, template, category, channel, locale, params,
                                   status, not_before, expires_at, priority, resent_from,
                                   campaign_id, rule_id, period)
        SELECT x.s, x.u, x.t, x.c, x.ch, x.l, x.p, 'queued', x.nb, x.e, x.pr, x.rf,
            coalesce(x.cid, o.campaign_id), coalesce(x.rid, o.rule_id), coalesce(x.per, o.period)
        FROM unnest(
            CAST(:s AS text[]), CAST(:u AS text[]), CAST(:t AS text[]), CAST(:c AS text[]),
            CAST(:ch AS text[]), CAST(:l AS text[]), CAST(:p AS jsonb[]),
            CAST(:e AS timestamptz[]), CAST(:nb AS timestamptz[]), CAST(:pr AS smallint[]),
            CAST(:rf AS bigint[]), CAST(:cid AS text[]), CAST(:rid AS text[]),
            CAST(:per AS text[]))
            AS x(s, u, t, c, ch, l, p, e, nb, pr, rf, cid, rid, per)
        LEFT JOIN notifications o ON o.id = x.rf
        ON CONFLICT (source, user_id, template) DO NOTHING RETURNING id"""),
        {
            "s": [i.notice.source for i in items],
            "u": [i.notice.user_id for i in items],
            "t": [i.notice.template for i in items],
            "c": [i.notice.category for i in items],
            "ch": [i.notice.channel for i in items],
            "l": [i.notice.locale for i in items],
            "p": [orjson.dumps(i.notice.params).decode() for i in items],
            "e": [i.expires_at for i in items],
            "nb": [i.not_before for i in items],
            "pr": [i.notice.priority for i in items],
            "rf": [i.notice.resent_from for i in items],
            "cid": [i.notice.campaign_id for i in items],
            "rid": [i.notice.rule_id for i in items],
            "per": [i.notice.period for i in items],
        },
    )
    return [int(r.id) for r in rows]


async def enqueue_one(session: AsyncSession, item: ScheduledNotification) -> int | None:
    """Queue one notification; its id, or None when its (source, user, template) exists."""
    ids = await _insert(session, [item])
    return ids[0] if ids else None


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, lease: timedelta = SENDING_LEASE
) -> list[NotificationRow]:
    """Due messages, locked for this transaction; replicas skip each other's. A row `sending`
    for longer than `lease` was left by a crashed replica and is taken again."""
    rows = await session.execute(
        text(f"""
        SELECT {COLUMNS} FROM notifications
        WHERE (status IN ('queued', 'deferred') AND not_before <= :now)
           OR (status = 'sending' AND updated_at < :stale)
        ORDER BY not_before LIMIT :n FOR UPDATE SKIP LOCKED"""),
        {"now": now, "stale": now - lease, "n": limit},
    )
    return [_row(r) for r in rows]


async def lock_users(session: AsyncSession, users: list[str]) -> set[str]:
    """The users this transaction now handles alone (advisory locks, tried without waiting):
    one replica composes a user's digest from all of their waiting notices, not two halves."""
    if not users:
        return set()
    rows = await session.execute(
        text(
            "SELECT u FROM unnest(CAST(:u AS text[])) AS u "
            "WHERE pg_try_advisory_xact_lock(hashtextextended('notify.user:' || u, 0))"
        ),
        {"u": sorted(set(users))},
    )
    return {r.u for r in rows}


async def claim_gathered(
    session: AsyncSession,
    users: list[str],
    have: list[int],
    now: datetime,
    gather_until: datetime,
    limit: int,
    lease: timedelta = SENDING_LEASE,
) -> list[NotificationRow]:
    """The rest of these users' due notices (beyond the claim's limit), and their fresh reward
    notices queued up to `gather_until`, so that they go out in the same digest."""
    if not users:
        return []
    rows = await session.execute(
        text(f"""
        SELECT {COLUMNS} FROM notifications
        WHERE user_id = ANY(:u) AND id <> ALL(:have) AND (
            (status IN ('queued', 'deferred') AND not_before <= :now)
            OR (status = 'sending' AND updated_at < :stale)
            OR (status = 'queued' AND template = :t AND attempts = 0 AND digest_id IS NULL
                AND cap_day IS NULL AND not_before <= :gather))
        ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"""),
        {"u": users, "have": have, "now": now, "stale": now - lease, "t": REWARD_TEMPLATE,
         "gather": gather_until, "n": limit},
    )  # fmt: skip
    return [_row(r) for r in rows]


async def take_cap_slot(
    session: AsyncSession, user_id: str, day: date, category: str, cap: int
) -> bool:
    """One of the user's `cap` sends of that local day, or False when they are used up.

    One statement: concurrent takers serialise on the row, and the WHERE is re-checked against
    the newest count, so the cap holds across replicas.
    """
    if cap <= 0:
        return False
    row = (
        await session.execute(
            text(
                "INSERT INTO cap_slots (user_id, day, category, used) VALUES (:u, :d, :c, 1) "
                "ON CONFLICT (user_id, day, category) DO UPDATE SET used = cap_slots.used + 1 "
                "WHERE cap_slots.used < :cap RETURNING used"
            ),
            {"u": user_id, "d": day, "c": category, "cap": cap},
        )
    ).first()
    return row is not None


async def release_cap_slot(session: AsyncSession, user_id: str, day: date, category: str) -> None:
    """A message that ended undeliverable gives its slot back."""
    await session.execute(
        text(
            "UPDATE cap_slots SET used = used - 1 WHERE user_id = :u AND day = :d "
            "AND category = :c AND used > 0"
        ),
        {"u": user_id, "d": day, "c": category},
    )


async def update(session: AsyncSession, notification_id: int, **values: Any) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in values)
    await session.execute(
        text(f"UPDATE notifications SET {sets}, updated_at = now() WHERE id = :id"),
        {"id": notification_id, **values},
    )


async def update_many(session: AsyncSession, ids: list[int], **values: Any) -> None:
    """The same change to several notifications (the members of one message)."""
    sets = ", ".join(f"{k} = :{k}" for k in values)
    await session.execute(
        text(f"UPDATE notifications SET {sets}, updated_at = now() WHERE id = ANY(:ids)"),
        {"ids": ids, **values},
    )


async def get(
    session: AsyncSession, notification_id: int, lock: bool = False
) -> NotificationRow | None:
    row = (
        await session.execute(
            text(
                f"SELECT {COLUMNS} FROM notifications WHERE id = :i{' FOR UPDATE' if lock else ''}"
            ),
            {"i": notification_id},
        )
    ).first()
    return None if row is None else _row(row)


async def resends(session: AsyncSession, notification_id: int) -> int:
    """How many times this notification was sent again."""
    n = await session.scalar(
        text("SELECT count(*) FROM notifications WHERE resent_from = :i"), {"i": notification_id}
    )
    return int(n or 0)


async def has_any(session: AsyncSession, user_id: str) -> bool:
    """Whether notify ever had anything for this user."""
    row = await session.execute(
        text("SELECT 1 FROM notifications WHERE user_id = :u LIMIT 1"), {"u": user_id}
    )
    return row.first() is not None


async def record_sent(
    session: AsyncSession, sent: list[tuple[int, str, str, str, str, str, int]]
) -> None:
    """(id, status, body, channel, provider, provider message id, attempts) per accepted send."""
    await session.execute(
        text("""
        UPDATE notifications n SET status = x.s, body = x.b, sent_channel = x.c, provider = x.p,
            provider_message_id = x.m, attempts = x.a, reason = NULL, updated_at = now()
        FROM unnest(CAST(:i AS bigint[]), CAST(:s AS text[]), CAST(:b AS text[]),
                    CAST(:c AS text[]), CAST(:p AS text[]), CAST(:m AS text[]),
                    CAST(:a AS int[])) AS x(i, s, b, c, p, m, a)
        WHERE n.id = x.i"""),
        {k: [row[n] for row in sent] for n, k in enumerate("isbcpma")},
    )


async def opted_out(session: AsyncSession, users: list[str]) -> set[str]:
    rows = await session.execute(
        text("SELECT user_id FROM opt_outs WHERE user_id = ANY(:u)"), {"u": sorted(set(users))}
    )
    return {r.user_id for r in rows}


async def policies(session: AsyncSession) -> dict[str, Policy]:
    rows = await session.execute(
        text(
            "SELECT category, daily_cap, window_start, window_end, ttl_seconds, marketing "
            "FROM policies"
        )
    )
    return {
        r.category: Policy(
            r.category,
            r.daily_cap,
            r.window_start,
            r.window_end,
            timedelta(seconds=r.ttl_seconds),
            r.marketing,
        )
        for r in rows
    }


async def template_texts(
    session: AsyncSession, name: str, channel: str, locales: tuple[str, ...]
) -> dict[str, str]:
    """The template's text for this channel in each of `locales` that has one."""
    rows = await session.execute(
        text(
            "SELECT locale, text FROM templates WHERE name = :n AND channel = :c "
            "AND locale = ANY(:l)"
        ),
        {"n": name, "c": channel, "l": list(locales)},
    )
    return {r.locale: r.text for r in rows}


@dataclass(frozen=True, slots=True)
class RecipientRow:
    user_id: str
    notification_id: int
    status: str


async def recipients(
    session: AsyncSession, source: str, after: str | None, limit: int
) -> list[RecipientRow]:
    """The users a source's notifications went (or go) to, by user id."""
    rows = await session.execute(
        text(
            "SELECT user_id, id AS notification_id, status FROM notifications WHERE source = :s "
            "AND (CAST(:after AS text) IS NULL OR user_id > :after) ORDER BY user_id LIMIT :n"
        ),
        {"s": source, "after": after, "n": limit},
    )
    return [RecipientRow(**r._mapping) for r in rows]


async def by_user(
    session: AsyncSession, user_id: str, limit: int, after: int | None
) -> list[NotificationRow]:
    rows = await session.execute(
        text(
            f"SELECT {COLUMNS} FROM notifications WHERE user_id = :u "
            "AND (CAST(:after AS bigint) IS NULL OR id > :after) ORDER BY id LIMIT :n"
        ),
        {"u": user_id, "after": after, "n": limit},
    )
    return [_row(r) for r in rows]


async def status_counts(
    session: AsyncSession,
    user_id: str | None = None,
    source_prefix: str | None = None,
    source: str | None = None,
) -> dict[str, int]:
    rows = await session.execute(
        text(
            "SELECT status, count(*) AS n FROM notifications "
            "WHERE (CAST(:u AS text) IS NULL OR user_id = :u) "
            "AND (CAST(:s AS text) IS NULL OR source = :s) "
            "AND (CAST(:p AS text) IS NULL OR source LIKE :p || '%') GROUP BY status"
        ),
        {"u": user_id, "p": source_prefix, "s": source},
    )
    return {r.status: int(r.n) for r in rows}


@dataclass(frozen=True, slots=True)
class PeriodNotices:
    """The reward notices of one rule's period of a campaign (SPEC §12): by status, by status
    and reason, and how many distinct users they told."""

    rule_id: str
    period: str
    counts: dict[str, int]
    reasons: list[dict[str, Any]]
    told_users: int  # users with at least one of this period's notices sent or delivered


@dataclass(frozen=True, slots=True)
class CampaignNotices:
    """A campaign's reward notices (SPEC §12): by status, by status and reason, how many
    distinct users each status reached, and the same per rule and period. A notice queued
    before notices carried their rule and period (migration 0009) is in the campaign's figures
    and in no period's."""

    counts: dict[str, int]
    reasons: list[dict[str, Any]]
    users: dict[str, int]
    told_users: int  # users with at least one notice sent or delivered
    periods: list[PeriodNotices]
    unattributed: int = 0  # notices of no rule and period (queued before migration 0009)


TOLD = ("sent", "delivered")
Reasons = dict[tuple[str, str | None], int]  # notices by (status, reason)


async def campaign_counts(session: AsyncSession, campaign_id: str) -> CampaignNotices:
    rows = await session.execute(
        text(
            "SELECT rule_id, period, status, reason, count(*) AS n "
            "FROM notifications WHERE campaign_id = :c GROUP BY rule_id, period, status, reason"
        ),
        {"c": campaign_id},
    )
    whole: Reasons = {}
    per_period: dict[tuple[str, str], Reasons] = {}
    unattributed = 0
    for r in rows:
        key = (r.status, r.reason)
        whole[key] = whole.get(key, 0) + int(r.n)
        if r.rule_id is not None and r.period is not None:
            per_period.setdefault((r.rule_id, r.period), {})[key] = int(r.n)
        else:  # queued before 0009
            unattributed += int(r.n)
    # Distinct users per status, told over the campaign and told per rule and period (a notice
    # of no period is told in the campaign only).
    users = await session.execute(
        text(
            "SELECT 'status' AS scope, CAST(NULL AS text) AS rule_id, CAST(NULL AS text) AS "
            "period, status, count(DISTINCT user_id) AS users FROM notifications "
            "WHERE campaign_id = :c GROUP BY status "
            "UNION ALL SELECT CASE GROUPING(rule_id, period) WHEN 0 THEN 'period' "
            "ELSE 'campaign' END, rule_id, period, NULL, count(DISTINCT user_id) "
            "FROM notifications WHERE campaign_id = :c AND status = ANY(:told) "
            "GROUP BY GROUPING SETS ((rule_id, period), ())"
        ),
        {"c": campaign_id, "told": list(TOLD)},
    )
    by_status: dict[str, int] = {}
    told: dict[tuple[str, str] | None, int] = {}  # None: the whole campaign
    for u in users:
        if u.scope == "status":
            by_status[u.status] = int(u.users)
        elif u.scope == "campaign":
            told[None] = int(u.users)
        elif u.rule_id is not None and u.period is not None:
            told[(u.rule_id, u.period)] = int(u.users)
    return CampaignNotices(
        counts=_by_status(whole),
        reasons=_by_status_and_reason(whole),
        users=dict(sorted(by_status.items())),
        told_users=told.get(None, 0),
        periods=[
            PeriodNotices(rule, period, _by_status(n), _by_status_and_reason(n),
                          told.get((rule, period), 0))
            for (rule, period), n in sorted(per_period.items())
        ],
        unattributed=unattributed,
    )  # fmt: skip


def _by_status(reasons: Reasons) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (status, _), n in sorted(reasons.items(), key=lambda kv: kv[0][0]):
        counts[status] = counts.get(status, 0) + n
    return counts


def _by_status_and_reason(reasons: Reasons) -> list[dict[str, Any]]:
    """Rows {status, reason, n} by status, then reason (none first)."""
    order = sorted(reasons.items(), key=lambda kv: (kv[0][0], kv[0][1] is not None, kv[0][1]))
    return [{"status": s, "reason": r, "n": n} for (s, r), n in order]


async def waiting_counts(session: AsyncSession) -> dict[str, int]:
    """Notifications not yet at an end, by status."""
    rows = await session.execute(
        text(
            "SELECT status, count(*) AS n FROM notifications "
            "WHERE status IN ('queued', 'deferred', 'sending') GROUP BY status"
        )
    )
    return {r.status: int(r.n) for r in rows}


async def suppress_waiting(session: AsyncSession, source: str, reason: str) -> None:
    """The source's messages still waiting to be sent end `suppressed` with `reason`."""
    await session.execute(
        text(
            "UPDATE notifications SET status = 'suppressed', reason = :r, "
            "updated_at = now() WHERE source = :s AND status IN ('queued', 'deferred')"
        ),
        {"s": source, "r": reason},
    )


async def lock_messages(session: AsyncSession, provider: str, message_ids: list[str]) -> None:
    """A send being recorded and its receipt being stored serialise on the message id, so the
    later of the two sees the earlier (under READ COMMITTED neither would otherwise)."""
    await lock_keys(session, (f"notify.message:{provider}:{m}" for m in message_ids))


async def record_receipts(
    session: AsyncSession, provider: str, receipts: list[tuple[str, bool, str]]
) -> None:
    await session.execute(
        text(
            "INSERT INTO receipts (provider, message_id, delivered, stat) "
            "SELECT :p, * FROM unnest(CAST(:m AS text[]), CAST(:d AS boolean[]), "
            "CAST(:s AS text[])) ON CONFLICT DO NOTHING"
        ),
        {
            "p": provider,
            "m": [r[0] for r in receipts],
            "d": [r[1] for r in receipts],
            "s": [r[2] for r in receipts],
        },
    )


@dataclass(frozen=True, slots=True)
class ReceiptChange:
    """A sent message a delivery receipt moved to `delivered` or `failed`."""

    id: int
    user_id: str
    category: str
    channel: str
    status: str
    cap_day: date | None
    digest_id: int | None


async def apply_receipts(
    session: AsyncSession, provider: str, message_ids: list[str]
) -> list[ReceiptChange]:
    """Move sent messages whose receipt has arrived to delivered / failed (either order of
    arrival). Returns the rows that changed."""
    rows = await session.execute(
        text("""
        UPDATE notifications n SET
            status = CASE WHEN r.delivered THEN 'delivered' ELSE 'failed' END,
            reason = CASE WHEN r.delivered THEN n.reason ELSE 'receipt: ' || r.stat END,
            updated_at = now()
        FROM receipts r
        WHERE n.status = 'sent' AND n.provider = r.provider AND n.provider_message_id = r.message_id
          AND r.provider = :p AND r.message_id = ANY(:m)
        RETURNING n.id, n.user_id, n.category, n.channel, n.status, n.cap_day, n.digest_id"""),
        {"p": provider, "m": message_ids},
    )
    return [ReceiptChange(**r._mapping) for r in rows]
