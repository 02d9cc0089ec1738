"""The rigging drill (SPEC §14, issue 17): what a prize hunter would try against a running stack,
and what must happen to each attempt — refused at ingest, refused at scoring, flagged, or held.

Hijacks go through the credentials a hunter can get: their own user token (any user can read
theirs out of the client app) and a relay key extracted from a server (the `ingest` role).
Riggers that the rules cannot refuse — a bot that types faster than a person, a group whose
members all join in the month's last days, a points farmer, accounts acting in lockstep from one
relay, a group carried by one member — are sent with the credentials they would really have,
and must come out *flagged*. `engage simulate --rigging` prints the table; the demo runs it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

Event = dict[str, Any]
FLAG_WAIT_S = 120.0


@dataclass
class Attempt:
    """One rigging attempt: what was tried, what must happen, what did."""

    name: str
    expect: str
    outcome: str = "not run"
    ok: bool = False


@dataclass
class Target:
    """Whose group the hijacks aim at, and who aims."""

    group_id: str
    owner_id: str
    province: str
    stranger_id: str  # a user who is not the owner (nor a member, for the bonus card)


@dataclass
class DrillResult:
    attempts: list[Attempt] = field(default_factory=list)
    rigged_groups: dict[str, str] = field(default_factory=dict)  # group id → expected flag
    rigged_owners: dict[str, str] = field(default_factory=dict)  # group id → its owner
    month: str = ""

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.attempts)


def _event(kind: str, user_id: str, at: datetime, **fields: Any) -> Event:
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "occurred_at": at.isoformat(),
        "user_id": user_id,
        **fields,
    }


def _group_created(group_id: str, owner: str, at: datetime, name: str, province: str) -> Event:
    return _event("group_created", owner, at, group_id=group_id, name=name, province=province)


def drill_days(now: datetime, tz: ZoneInfo) -> tuple[date, date, date]:
    """(first usable day of the previous month, the day its late joins happen, yesterday):
    every event of the drill is live, so none may be older than ingest's 35 days."""
    today = now.astimezone(tz).date()
    month_start = today.replace(day=1)
    prev_end = month_start - timedelta(days=1)
    prev_start = prev_end.replace(day=1)
    first = max(prev_start, today - timedelta(days=30))
    late = prev_end - timedelta(days=1)  # the month's second-to-last day
    return first, late, today - timedelta(days=1)


def _at(day: date, tz: ZoneInfo, hour: int = 12, minute: int = 0, second: float = 0) -> datetime:
    base = datetime.combine(day, time(hour, minute), tzinfo=tz)
    return base + timedelta(seconds=second)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


class Drill:
    """Runs the attempts against ingest, scoring and rewards at the given URLs."""

    def __init__(
        self,
        urls: dict[str, str],
        platform_key: str,
        viewer_key: str,
        relay_key: str,
        token: Callable[[str], str],
        tz: ZoneInfo,
        now: datetime | None = None,
        prefix: str = "rig",
    ) -> None:
        self.urls = urls
        self.platform_key = platform_key
        self.viewer_key = viewer_key
        self.relay_key = relay_key
        self.token = token
        self.tz = tz
        self.now = now or datetime.now(UTC)
        self.p = prefix
        self.result = DrillResult()

    async def _post(self, credential: str, events: list[Event]) -> dict[str, Any]:
        """Post in batches of ≤ 500; the merged response (accepted, rejected codes)."""
        accepted, codes = 0, []
        async with httpx.AsyncClient(base_url=self.urls["ingest"], timeout=60) as c:
            for i in range(0, len(events), 500):
                r = await c.post(
                    "/v1/events",
                    json={"events": events[i : i + 500]},
                    headers={"Authorization": f"Bearer {credential}"},
                )
                body = r.json() if r.status_code in (202, 422) else {}
                if "rejected" not in body:  # not a per-item answer: the request itself failed
                    return {"status": r.status_code, "accepted": 0, "codes": [r.text[:200]]}
                accepted += body["accepted"]
                codes += [x["code"] for x in body["rejected"]]
        return {"status": 202, "accepted": accepted, "codes": codes}

    def _attempt(self, name: str, expect: str) -> Attempt:
        a = Attempt(name, expect)
        self.result.attempts.append(a)
        return a

    async def _refused_at_ingest(
        self, name: str, credential: str, events: list[Event], codes: set[str]
    ) -> None:
        a = self._attempt(name, f"refused at ingest ({' or '.join(sorted(codes))})")
        r = await self._post(credential, events)
        got = set(r["codes"])
        a.ok = r["accepted"] == 0 and bool(got) and got <= codes
        a.outcome = f"{r['accepted']} accepted, rejected: {', '.join(sorted(got)) or 'none'}"

    async def alive(self, candidates: list[Target]) -> Target:
        """The first candidate whose group scoring knows and reads as not dissolved."""
        for target in candidates[:20]:
            group = await self._group(target.group_id, wait_s=120)
            if group is not None and not group.get("dissolved"):
                return target
        raise RuntimeError("no live group to aim the drill at among the 20 biggest")

    # -- the hijacks -------------------------------------------------------------------------

    async def hijacks(self, target: Target, enroll_campaign: str | None) -> None:
        """Each request of the red-team report (issue 17) against someone else's group."""
        g, owner, stranger = target.group_id, target.owner_id, target.stranger_id
        now = self.now - timedelta(minutes=1)
        own = self.token(stranger)
        await self._refused_at_ingest(
            "client app: +100,000 points for the group's owner",
            own,
            [_event("points", owner, now, delta=100_000)],
            {"user_mismatch", "type_not_allowed"},
        )
        await self._refused_at_ingest(
            "client app: −100,000 points for oneself (sinks a rival the same way)",
            own,
            [_event("points", stranger, now, delta=-100_000)],
            {"type_not_allowed"},
        )
        await self._refused_at_ingest(
            "extracted relay key: +100,000 points for the owner",
            self.relay_key,
            [_event("points", owner, now, delta=100_000)],
            {"type_not_allowed"},
        )
        await self._refused_at_ingest(
            "client app: bonus card of 10,000 for a group one is not in",
            own,
            [_event("bonus_card", stranger, now, group_id=g, points=10_000)],
            {"type_not_allowed"},
        )
        await self._refused_at_ingest(
            "client app: a backdated group_created that names oneself owner",
            own,
            [
                _event(
                    "group_created",
                    stranger,
                    now - timedelta(days=30),
                    group_id=g,
                    name="hijacked",
                    province="XZ",
                )
            ],
            {"type_not_allowed"},
        )
        await self._refused_at_ingest(
            "client app: messages in another user's name",
            own,
            [_event("message", owner, now, client="mobile", group_id=g)],
            {"user_mismatch"},
        )
        # Past ingest, refused by scoring's rules: group facts are written once.
        a = self._attempt(
            "platform: a second, backdated group_created for the group",
            "accepted by ingest, refused by scoring (owner, name, province unchanged)",
        )
        before = await self._group(g, wait_s=120)
        refused_before = await self._refusals()
        r = await self._post(
            self.platform_key,
            [
                _event(
                    "group_created",
                    stranger,
                    now - timedelta(days=30),
                    group_id=g,
                    name="hijacked",
                    province="XZ",
                )
            ],
        )
        b = self._attempt(
            "client app: the stranger dissolves the group",
            "accepted by ingest (a user may dissolve their own group), refused by scoring",
        )
        r2 = await self._post(own, [_event("group_dissolved", stranger, now, group_id=g)])
        processed = await self._refused_since(refused_before, 2)
        after = await self._group(g)
        a.ok = (
            processed
            and r["accepted"] == 1
            and after is not None
            and before is not None
            and all(after.get(k) == before.get(k) for k in ("owner_id", "name", "province"))
        )
        a.outcome = (
            ("" if processed else "NOT PROCESSED in time; ")
            + f"ingest accepted {r['accepted']}; group now owner={after and after.get('owner_id')}"
            f", province={after and after.get('province')}"
        )
        b.ok = (
            processed and r2["accepted"] == 1 and after is not None and not after.get("dissolved")
        )
        dissolved = after.get("dissolved") if after else None
        b.outcome = f"ingest accepted {r2['accepted']}; dissolved={dissolved}"
        if enroll_campaign:
            c = self._attempt(
                "client app: the stranger enrolls the owner's group in a campaign",
                "refused by rewards (403: only the owner enrolls)",
            )
            async with httpx.AsyncClient(base_url=self.urls["rewards"], timeout=30) as client:
                resp = await client.post(
                    f"/v1/campaigns/{enroll_campaign}/enrollments",
                    json={"group_id": g, "owner_id": owner},
                    headers={"Authorization": f"Bearer {own}"},
                )
            c.ok = resp.status_code == 403
            c.outcome = f"{resp.status_code} {resp.json().get('code', '')}".strip()

    async def _group(self, group_id: str, wait_s: float = 0) -> dict[str, Any] | None:
        """The group's current month as scoring reads it; waits up to `wait_s` for it to be
        known (scoring may still be reading the traffic that created it)."""
        month = self.now.astimezone(self.tz).strftime("%Y-%m")
        deadline = asyncio.get_running_loop().time() + wait_s
        async with httpx.AsyncClient(
            base_url=self.urls["scoring"],
            timeout=30,
            headers={"Authorization": f"Bearer {self.viewer_key}"},
        ) as c:
            while True:
                r = await c.get(f"/v1/groups/{group_id}/months/{month}")
                if r.status_code == 200 or asyncio.get_running_loop().time() >= deadline:
                    break
                await asyncio.sleep(0.5)
        return r.json() if r.status_code == 200 else None

    async def _refused_since(self, baseline: float, n: int, timeout_s: float = 60) -> bool:
        """Until scoring has refused `n` more events than `baseline` (its counter, taken before
        the attempts were sent); False after `timeout_s` — the check then fails, it does not
        pass on an unchanged group."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await self._refusals() < baseline + n:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.25)
        return True

    async def _refusals(self) -> float:
        async with httpx.AsyncClient(base_url=self.urls["scoring"], timeout=10) as c:
            text = (await c.get("/metrics")).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("engage_scoring_refused_events_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    # -- the riggers the rules cannot refuse: they must come out flagged ----------------------

    def riggers(self, province: str) -> list[tuple[str, list[Event], str, str, str]]:
        """(credential kind, events, entity key to check, flag, what it is): kind is `user`
        (each user's own token), `relay` (the extracted relay key) or `platform`."""
        first, late, yesterday = drill_days(self.now, self.tz)
        p, tz = self.p, self.tz
        out: list[tuple[str, list[Event], str, str, str]] = []
        # A bot typing 300 messages in three minutes, with its own token.
        bot = f"{p}-bot"
        out.append(
            (
                "user",
                [
                    _event("message", bot, _at(yesterday, tz, 9, 0, i * 0.6), client="mobile")
                    for i in range(300)
                ],
                f"user:{bot}:{yesterday}",
                "message_rate",
                "a bot: 300 messages in 3 minutes",
            )
        )
        # A points farmer: a little every day, then a spike the platform paid (an exploit).
        farmer = f"{p}-farmer"
        days = _days(yesterday - timedelta(days=10), yesterday)
        farm = [_event("points", farmer, _at(d, tz), delta=50) for d in days[:-1]]
        farm.append(_event("points", farmer, _at(days[-1], tz), delta=60_000))
        out.append(("platform", farm, f"user:{farmer}:{yesterday}", "points_spike",
                    "a points farmer: 50 a day, then 60,000"))  # fmt: skip
        # Eight accounts from one relay, sending the same messages at the same minutes.
        lock = [
            _event("message", f"{p}-lock-{k}", _at(yesterday, tz, 10, m, k), client="pc")
            for k in range(8)
            for m in range(30)
        ]
        out.append(("relay", lock, f"user:{p}-lock-0:{yesterday}", "lockstep",
                    "8 accounts in lockstep from one relay"))  # fmt: skip
        # A group whose 30 members all join on the month's second-to-last day.
        late_group, late_owner = f"{p}-late-group", f"{p}-late-0"
        created = [
            _group_created(late_group, late_owner, _at(first, tz, 8), "Late joiners", province)
        ]
        joins = [
            _event("group_join", f"{p}-late-{k}", _at(late, tz, 20, k), group_id=late_group)
            for k in range(30)
        ]
        chat = [
            _event(
                "message",
                f"{p}-late-{k}",
                _at(late, tz, 21, k),
                client="mobile",
                group_id=late_group,
            )
            for k in range(30)
        ]
        out.append(("platform", created, "", "", ""))
        out.append(("user", joins + chat, f"group:{late_group}:{late:%Y-%m}", "late_joins",
                    "a group whose 30 members join on the month's 2nd-last day"))  # fmt: skip
        # The same hidden as early joins: members join now, dated back into last month.
        back_group, back_owner = f"{p}-back-group", f"{p}-back-0"
        created = [
            _group_created(back_group, back_owner, _at(first, tz, 8), "Backdaters", province)
        ]
        backdated = [
            _event("group_join", f"{p}-back-{k}", _at(first, tz, 10, k), group_id=back_group)
            for k in range(1, 16)
        ]
        out.append(("platform", created, "", "", ""))
        out.append(("user", backdated, f"group:{back_group}:{first:%Y-%m}", "late_joins",
                    "15 members join now, their joins backdated into last month"))  # fmt: skip
        # A group carried by one member: 6,000 points in the month while eight others idle.
        dom_group, dom_owner = f"{p}-dom-group", f"{p}-dom-0"
        dom_days = _days(max(yesterday.replace(day=1), yesterday - timedelta(days=9)), yesterday)
        created = [
            _group_created(
                dom_group,
                dom_owner,
                _at(dom_days[0] - timedelta(days=1), tz, 8),
                "One-man band",
                province,
            )
        ]
        members = [
            _event("group_join", f"{p}-dom-{k}", _at(dom_days[0], tz, 9, k), group_id=dom_group)
            for k in range(9)
        ]
        each = -(-6_000 // len(dom_days))
        points = [_event("points", dom_owner, _at(d, tz, 13), delta=each) for d in dom_days]
        out.append(("platform", created, "", "", ""))
        out.append(("user", members, "", "", ""))
        out.append(("platform", points, f"group:{dom_group}:{yesterday:%Y-%m}", "dominant_member",
                    "a group carried by one member's points"))  # fmt: skip
        self.result.month = f"{late:%Y-%m}"
        self.result.rigged_groups = {late_group: "late_joins", dom_group: "dominant_member"}
        self.result.rigged_owners = {late_group: late_owner, dom_group: dom_owner}
        return out

    async def flagged(self, province: str) -> None:
        """Send the riggers, then wait (bounded) until scoring shows each one's flag."""
        checks: list[tuple[Attempt, str, str]] = []
        for kind, events, key, flag, what in self.riggers(province):
            if kind == "platform":
                await self._post(self.platform_key, events)
            elif kind == "relay":
                await self._post(self.relay_key, events)
            else:
                by_user: dict[str, list[Event]] = {}
                for e in events:
                    by_user.setdefault(e["user_id"], []).append(e)
                for user, evs in by_user.items():
                    await self._post(self.token(user), evs)
            if key:
                checks.append((self._attempt(what, f"flagged {flag}"), key, flag))
        deadline = asyncio.get_running_loop().time() + FLAG_WAIT_S
        pending = list(checks)
        while pending and asyncio.get_running_loop().time() < deadline:
            still = []
            for attempt, key, flag in pending:
                flags = await self._flags(key)
                attempt.outcome = f"flags: {', '.join(flags) or 'none'}"
                attempt.ok = flag in flags
                if not attempt.ok:
                    still.append((attempt, key, flag))
            pending = still
            if pending:
                await asyncio.sleep(1)

    async def _flags(self, key: str) -> list[str]:
        entity, ident, period = key.split(":")
        path = (
            f"/v1/users/{ident}/days/{period}"
            if entity == "user"
            else f"/v1/groups/{ident}/months/{period}"
        )
        async with httpx.AsyncClient(
            base_url=self.urls["scoring"],
            timeout=30,
            headers={"Authorization": f"Bearer {self.viewer_key}"},
        ) as c:
            r = await c.get(path)
        if r.status_code != 200:
            return []
        return [f["name"] for f in r.json().get("flags", [])]


def render(attempts: Iterable[Attempt]) -> str:
    lines = ["Rigging drill (SPEC §14): every attempt refused, flagged or held"]
    for a in attempts:
        mark = "ok " if a.ok else "NOT"
        lines.append(f"  [{mark}] {a.name}\n        expected {a.expect}; got {a.outcome}")
    return "\n".join(lines)


def pick_targets(groups: Iterable[Any], users: Iterable[Any]) -> list[Target]:
    """Candidate targets, biggest group first (its owner has most to lose), each with a user
    outside it — `groups`/`users` are engage.simulator.world's Group and User. The drill takes
    the first one scoring reads as alive (the world dissolves a few groups itself)."""
    everyone = sorted(u.user_id for u in users)
    out = []
    for group in sorted(groups, key=lambda g: (-len(g.members), g.group_id)):
        members = set(group.members) | {group.owner}
        stranger = next(u for u in everyone if u not in members)
        out.append(Target(group.group_id, group.owner, group.province, stranger))
    return out


async def run_drill(
    drill: Drill, candidates: list[Target], enroll_campaign: str | None
) -> DrillResult:
    target = await drill.alive(candidates)
    await drill.hijacks(target, enroll_campaign)
    await drill.flagged(target.province)
    return drill.result
