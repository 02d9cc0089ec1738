"""After a scenario: the pipeline's results against an independent reference computed from the
events ingest acknowledged (tests/reference, written from the spec, sharing no code with the
services). Every comparison is a set or multiset difference, reported as counts:

- events:  accepted by ingest vs on the topic vs in scoring's ledger, and the effect of each on
  the user-day counters (an event counted twice shows as a counter above the reference);
  records forced onto the topic past intake (poison) each in scoring's DLQ, none applied;
- scores:  every user-day and user-month row, every group-month and every leaderboard, exactly;
- flags:   message_rate, points_spike and late_joins on the latest published records, against
  an independent model, with a planted rigger for each;
- grants:  one per (campaign, user) the reference says qualifies, none other;
- notices: one per granted grant; each in exactly one message handed to the IM platform (a
  digest or alone) or still waiting with a reason (the user's cap for the day is used up), none
  suppressed; the platform received exactly the handed messages, and no user more than the cap
  per local day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
import httpx
import orjson

from engage.demo_campaigns import campaign_window
from engage.topic_audit import read_topic, tally_topic
from shared.topics import EVENTS_TOPIC, METRICS_TOPIC
from tests.chaos.harness import DAILY_CAP, Pipeline
from tests.reference import anomaly_model as anomalies
from tests.reference import rewards_model as model
from tests.reference import scoring_model as ref

DAY_COUNTERS = ("messages", "messages_sms", "logins", "friends_added", "checkins")
DAY_FIELDS = (*DAY_COUNTERS, "messages_mobile", "online_seconds_pc", "online_seconds_mobile",
              "points_delta")  # fmt: skip
MONTH_FIELDS = ("messages", "messages_sms", "online_seconds_pc", "online_seconds_mobile",
                "online_points", "message_points", "activity_points", "points_delta",
                "friends_added", "checkins", "logins", "active_days")  # fmt: skip
GROUP_FIELDS = ("members", "active_members", "activity_points", "points_growth", "bonus_points",
                "group_messages")  # fmt: skip


@dataclass
class Tally:
    """Expected vs actual for one kind of thing."""

    name: str
    expected: int
    actual: int
    lost: int
    duplicated: int
    unexpected: int

    @classmethod
    def of(cls, name: str, expected: Iterable[Hashable], actual: Iterable[Hashable]) -> Tally:
        want, got = set(expected), Counter(actual)
        return cls(
            name,
            len(want),
            sum(got.values()),
            len(want - set(got)),
            sum(n - 1 for n in got.values() if n > 1),
            len(set(got) - want),
        )

    def ok(self) -> bool:
        return self.lost == self.duplicated == self.unexpected == 0

    def __str__(self) -> str:
        return (
            f"{self.name}: expected {self.expected:,}, actual {self.actual:,}, lost {self.lost}, "
            f"duplicated {self.duplicated}, unexpected {self.unexpected}"
        )


@dataclass
class Report:
    scenario: str
    tallies: list[Tally] = field(default_factory=list)
    compared: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    faults: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> bool:
        return not self.mismatches and all(t.ok() for t in self.tallies)

    def render(self) -> str:
        lines = [f"[{self.scenario}] {'EXACT' if self.ok() else 'NOT EXACT'}"]
        lines += [f"  faults: {', '.join(f'{k} {v}' for k, v in self.faults.items())}"]
        lines += [f"  {t}" for t in self.tallies]
        lines += [
            "  scores equal: " + ", ".join(f"{n:,} {k}" for k, n in sorted(self.compared.items()))
        ]
        lines += [f"  MISMATCH {m}" for m in self.mismatches[:20]]
        return "\n".join(lines)


REPORTS: list[Report] = []  # printed by tests/chaos/conftest.py at the end of the session


async def check(pipe: Pipeline, scenario: str, faults: dict[str, Any]) -> Report:
    report = Report(scenario, faults=faults)
    REPORTS.append(report)
    accepted = {i.lower() for i in pipe.accepted()}
    events = [e for e in pipe.events if e["event_id"].lower() in accepted]
    months = sorted({ref.month_key(ref.day_of(ref.ts(e["occurred_at"]))) for e in events})
    exp = ref.compute(events, months)
    conn = await asyncpg.connect(pipe.url.replace("+asyncpg", ""))
    published = await _published(pipe)
    try:
        await _events(pipe, conn, report, accepted, exp, published)
        await _scores(pipe, conn, report, exp, months, published)
        await _flags(report, events, published)
        granted = await _grants(pipe, conn, report, events, exp)
        await _notices(pipe, conn, report, granted)
    finally:
        await conn.close()
    return report


Published = dict[tuple[str, str, str, str], dict[str, Any]]


async def _published(pipe: Pipeline) -> Published:
    """The latest record of every entity on scoring's changelog (engage.metrics.v1): the state
    rewards sees, and where `friends_added` is (scoring counts it from friend pairs, SPEC §9;
    the user_day column keeps only what the batch adds by itself)."""
    latest: Published = {}

    def on_record(record: Any) -> None:
        if record.value is not None:
            doc = orjson.loads(record.value)
            latest[(doc["entity"], doc["grain"], doc["id"], doc["period"])] = doc

    await read_topic(pipe.bootstrap, METRICS_TOPIC, on_record)
    return latest


def _with_friends(
    rows: dict[tuple[str, Any], dict[str, Any]], grain: str, published: Published
) -> dict[tuple[str, Any], dict[str, Any]]:
    """`friends_added` of each row as scoring published it (0 when never published)."""
    for (user, period), row in rows.items():
        label = period.isoformat() if grain == "day" else str(period)
        doc = published.get(("user", grain, user, label))
        row["friends_added"] = int(doc["friends_added"]) if doc else 0
    return rows


async def _events(
    pipe: Pipeline,
    conn: asyncpg.Connection,
    report: Report,
    accepted: set[str],
    exp: ref.Expected,
    published: Published,
) -> None:
    tally = await tally_topic(pipe.bootstrap, EVENTS_TOPIC)
    on_topic = {i.lower() for i in tally.event_ids}
    report.tallies.append(Tally.of("events on the topic", accepted, on_topic & accepted))
    report.tallies[-1].unexpected = len(on_topic - accepted - pipe.poison)
    # Forced past intake: each in the DLQ (at-least-once there, so as a set), none applied.
    report.tallies.append(
        Tally.of("poison records dead-lettered", pipe.poison, set(await pipe.dead_lettered()))
    )
    ledger = [str(r[0]) for r in await conn.fetch("SELECT event_id FROM scoring.processed_events")]
    applied = Tally.of("events applied", accepted, ledger)
    # An event applied twice is one ledger row but counters above the reference; one skipped
    # counters below it. Only these counters grow by one per event.
    rows = await conn.fetch(f"SELECT user_id, day, {', '.join(DAY_COUNTERS)} FROM scoring.user_day")
    got = _with_friends({(r["user_id"], r["day"]): dict(r) for r in rows}, "day", published)
    over = under = 0
    for key in set(got) | set(exp.user_day):
        for f in DAY_COUNTERS:
            diff = (got[key][f] if key in got else 0) - exp.user_day.get(key, {}).get(f, 0)
            over, under = over + max(diff, 0), under + max(-diff, 0)
    applied.duplicated += over
    applied.lost += under
    report.tallies.append(applied)


async def _scores(
    pipe: Pipeline,
    conn: asyncpg.Connection,
    report: Report,
    exp: ref.Expected,
    months: list[str],
    published: Published,
) -> None:
    days = {(r["user_id"], r["day"]): dict(r) for r in await conn.fetch(
        f"SELECT user_id, day, {', '.join(DAY_FIELDS)} FROM scoring.user_day")}  # fmt: skip
    _compare(report, "user-days", _with_friends(days, "day", published), exp.user_day, DAY_FIELDS)
    month_rows = await conn.fetch("SELECT * FROM scoring.user_month")
    user_months = _with_friends(
        {(r["user_id"], ref.month_key(r["month"])): dict(r) for r in month_rows}, "month", published
    )
    _compare(report, "user-months", user_months, exp.user_month, MONTH_FIELDS)

    headers = {"Authorization": f"Bearer {pipe.keys['viewer']}"}
    url = pipe.service("scoring").url
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
        groups = sorted({g for g, _ in exp.group_month} | set(exp.groups))
        for month in months:
            for g in groups:
                r = await c.get(f"/v1/groups/{g}/months/{month}")
                want = exp.group_month.get((g, month), dict.fromkeys(GROUP_FIELDS, 0))
                got = {k: r.json()[k] for k in GROUP_FIELDS} if r.status_code == 200 else None
                if got is None and (g in exp.groups or any(want.values())):
                    report.mismatches.append(f"group {g} {month}: {r.status_code}")
                elif got is not None and got != want:
                    report.mismatches.append(f"group {g} {month}: {got} != {want}")
                report.compared["group-months"] += 1
            provinces = sorted({i["province"] for i in exp.groups.values() if "province" in i})
            for province in provinces:
                r = await c.get(f"/v1/leaderboards/{month}/{province}", params={"limit": 500})
                board = [i["group_id"] for i in r.json()["items"]]
                if board != ref.leaderboard(exp, month, province):
                    report.mismatches.append(f"leaderboard {month} {province}: {board}")
                report.compared["leaderboards"] += 1


async def _flags(report: Report, events: list[dict[str, Any]], latest: Published) -> None:
    """The anomaly flags on the latest published record of every user-day and group-month
    (scoring's changelog is the state rewards sees) against the independent model, for the
    flags it models; the harness plants a rigger for each."""
    published = {
        (entity, ident, period, f["name"])
        for (entity, _, ident, period), doc in latest.items()
        for f in doc.get("flags", [])
        if f["name"] in anomalies.MODELLED
    }
    expected = anomalies.flags(events)
    report.tallies.append(Tally.of("anomaly flags (" + ", ".join(anomalies.MODELLED) + ")",
                                   expected, published))  # fmt: skip
    if not expected:
        report.mismatches.append("no planted rigger flagged by the reference: nothing compared")


def _compare(
    report: Report,
    name: str,
    got: dict[Any, dict[str, Any]],
    want: dict[Any, dict[str, int]],
    fields: tuple[str, ...],
) -> None:
    for key in set(got) | set(want):
        g = {f: int(got[key][f]) if key in got else 0 for f in fields}
        w = {f: int(want[key].get(f, 0)) if key in want else 0 for f in fields}
        if g != w:
            report.mismatches.append(f"{name} {key}: {g} != {w}")
        report.compared[name] += 1


async def _grants(
    pipe: Pipeline,
    conn: asyncpg.Connection,
    report: Report,
    events: list[dict[str, Any]],
    exp: ref.Expected,
) -> dict[int, str]:
    """Grants against the reference; returns the granted ones (grant id → user)."""
    starts_at, ends_at = campaign_window(pipe.started_at, ref.TZ)
    qualify: dict[str, set[str]] = {
        "play_and_get_gifts": model.first_mobile_message_users(events, starts_at, ends_at),
        "invite_friends": model.invited_two_friends(exp, starts_at.date(), ends_at.date()),
    }
    rows = await conn.fetch("SELECT grant_id, campaign_id, user_id, status FROM rewards.grants")
    by_id = {cid: t for t, cid in pipe.campaigns.items()}
    want = {(t, u) for t, users in qualify.items() for u in users}
    report.tallies.append(Tally.of("grants", want, [(by_id[r[1]], r[2]) for r in rows]))
    not_granted = [r for r in rows if r["status"] != "granted"]
    if not_granted:
        report.mismatches.append(f"{len(not_granted)} grants not 'granted': {not_granted[:3]}")
    return {int(r["grant_id"]): r["user_id"] for r in rows if r["status"] == "granted"}


async def _notices(
    pipe: Pipeline, conn: asyncpg.Connection, report: Report, granted: dict[int, str]
) -> None:
    """Every granted grant told exactly once (SPEC §11): in one message handed to the platform
    (a digest or on its own), or still waiting with a reason (the user's cap for today is used
    up); none suppressed. Messages, not notices, count against the cap."""
    rows = await conn.fetch(
        "SELECT id, source, user_id, status, reason, cap_day, sent_channel, digest_id, body "
        "FROM notify.notifications WHERE source LIKE 'grant:%'"
    )
    expected = {f"grant:{g}" for g in granted}
    report.tallies.append(Tally.of("notices", expected, [r["source"] for r in rows]))
    handed = [r for r in rows if r["status"] in ("sent", "delivered")]
    waiting = [r for r in rows if r["status"] in ("queued", "deferred") and r["reason"]]
    for r in rows:
        if r not in handed and r not in waiting:
            report.mismatches.append(f"notice {r['id']} ended {r['status']} ({r['reason']})")
    told = [r["source"] for r in handed + waiting]
    report.tallies.append(Tally.of("grants told (one message, or waiting)", expected, told))
    # A message: a digest (its members share digest_id, the lead's id) or a notice alone.
    members: dict[int, list[asyncpg.Record]] = {}
    for r in handed:
        members.setdefault(r["digest_id"] or r["id"], []).append(r)
    for message, rs in members.items():
        if len({(r["user_id"], r["cap_day"], r["sent_channel"], r["body"]) for r in rs}) != 1:
            report.mismatches.append(f"digest {message}: members disagree on what was sent")
        elif len(rs) > 1 and f"{len(rs)}项奖励" not in rs[0]["body"]:
            report.mismatches.append(f"digest {message} does not list its {len(rs)} rewards")
    per_day: Counter[tuple[str, date]] = Counter(
        (rs[0]["user_id"], rs[0]["cap_day"]) for rs in members.values()
    )
    over_cap = {k: n for k, n in per_day.items() if n > DAILY_CAP}
    if over_cap:
        report.mismatches.append(f"over the daily cap (notify's books): {over_cap}")
    users = {r["user_id"] for r in rows}
    silent = users - {r["user_id"] for r in handed + waiting}
    if silent:
        report.mismatches.append(f"{len(silent)} users with notices got no message")
    report.faults["notices waiting for the next local day"] = len(waiting)

    # What reached the users: IM through the platform's webhook, the SMS fallback (taken when
    # the IM call fails) through the sandbox provider, which records it in notify's schema.
    # Both know a message by its id: a digest's lead notification's, else the notice's own.
    receipts = pipe.im.snapshot()
    sms = await conn.fetch("SELECT notification_id, user_id, at FROM notify.sandbox_messages")
    received = [(x.message_id, x.user_id, x.received_at) for x in receipts] + [
        (f"sms:{r['notification_id']}", r["user_id"], r["at"]) for r in sms
    ]
    handed_ids = {
        str(m) if rs[0]["sent_channel"] == "im" else f"sms:{m}" for m, rs in members.items()
    }
    report.tallies.append(
        Tally.of("messages received (IM + SMS)", handed_ids, {m for m, _, _ in received})
    )
    report.faults["fell back to SMS"] = len(sms)
    # A crash between the webhook call and recording it sends the same message_id again after
    # the lease; the platform deduplicates on it (README, providers). Counted, not hidden.
    report.faults["webhook calls repeated (same message_id)"] = len(receipts) - len(
        {x.message_id for x in receipts}
    )
    seen: Counter[tuple[str, date]] = Counter(
        (user, ref.day_of(at)) for user, at in {m: (u, at) for m, u, at in received}.values()
    )
    over = {k: n for k, n in seen.items() if n > DAILY_CAP}
    if over:
        report.mismatches.append(f"users over the daily cap at the platform: {over}")
    report.compared["users within the cap"] = len({u for u, _ in seen})
