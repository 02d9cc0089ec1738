"""`engage care USER`: one customer's story across the services, for the care agent on the phone
(SPEC §11) — what scoring applied by day, what rewards granted and whether it was credited, what
notify sent, and, for every grant, the message that told the user (or why none did yet).

It reads each service's `GET /v1/users/{id}/timeline` with a viewer key; a service that never saw
the user says so (404) and the story goes on with the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

MAX_PAGES = 20  # per service: a care call needs the recent story, not a data export


@dataclass
class Story:
    """What each service said about one user."""

    user_id: str
    days: list[dict[str, Any]] = field(default_factory=list)  # scoring, one item per local day
    grants: list[dict[str, Any]] = field(default_factory=list)  # rewards
    notices: list[dict[str, Any]] = field(default_factory=list)  # notify
    unknown_to: list[str] = field(default_factory=list)  # services that never saw the user
    unreachable: dict[str, str] = field(default_factory=dict)  # service → why


async def _pages(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        r = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        r.raise_for_status()
        page = r.json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return items


async def gather(user_id: str, urls: dict[str, str], key: str) -> Story:
    """Ask scoring, rewards and notify (`urls` by service name) about `user_id`."""
    story = Story(user_id)
    headers = {"Authorization": f"Bearer {key}"}
    for service, into in (("scoring", story.days), ("rewards", story.grants),
                          ("notify", story.notices)):  # fmt: skip
        async with httpx.AsyncClient(base_url=urls[service], headers=headers, timeout=30) as c:
            try:
                into += await _pages(c, f"/v1/users/{user_id}/timeline", {"limit": 200})
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 404:
                    story.unknown_to.append(service)
                else:
                    story.unreachable[service] = _problem(exc.response)
            except httpx.HTTPError as exc:
                story.unreachable[service] = f"{type(exc).__name__}: {exc}"
    return story


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('code', '')}: {body.get('detail', '')}"
    except ValueError:
        return f"{response.status_code}"


@dataclass(frozen=True, slots=True)
class Line:
    at: str  # ISO date or date-time: sorts in time order
    service: str
    text: str


def _items(items: Iterable[dict[str, Any]]) -> str:
    return ", ".join(f"{i['amount']} {i['kind']}" for i in items)


def notice_of_grant(story: Story) -> dict[int, dict[str, Any]]:
    """For each grant id, the notification that tells of it (source `grant:<id>`)."""
    out: dict[int, dict[str, Any]] = {}
    for n in story.notices:
        source = str(n.get("source", ""))
        if source.startswith("grant:") and source[6:].isdigit():
            out[int(source[6:])] = n
    return out


def told(notice: dict[str, Any] | None) -> str:
    """How a grant's notice stands, in a care agent's words."""
    if notice is None:
        return "no notice yet (notify has not received the grant)"
    status, reason = notice["status"], notice.get("reason")
    digest = f" in digest #{notice['digest_id']}" if notice.get("digest_id") else ""
    via = f" via {notice['sent_channel']}" if notice.get("sent_channel") else ""
    if status in ("sent", "delivered"):
        return f"told: {status}{via}{digest}"
    if status == "deferred":
        return f"waiting ({reason or 'send window'}) until {notice.get('not_before')}"
    return f"{status}{f' ({reason})' if reason else ''}"


def lines(story: Story) -> list[Line]:
    """The story in time order."""
    out: list[Line] = []
    for d in story.days:
        effects = {
            k: v for k, v in d.items() if isinstance(v, int | float) and v and k != "active_days"
        }
        words = ", ".join(f"{k} {v}" for k, v in effects.items()) or "no activity"
        out.append(Line(str(d.get("day", "")), "scoring", words))
    notices = notice_of_grant(story)
    for g in story.grants:
        fulfilment = g.get("fulfilment") or g["status"]
        out.append(
            Line(
                str(g["created_at"]),
                "rewards",
                f"grant #{g['grant_id']} «{g.get('campaign_name') or g['campaign_id']}» "
                f"{g['period']}: {_items(g['items'])} — {g['status']}, fulfilment {fulfilment}"
                f" (by {g['fulfil_by']}); {told(notices.get(int(g['grant_id'])))}",
            )
        )
    for n in story.notices:
        if str(n.get("source", "")).startswith("grant:"):
            continue  # told with its grant
        reason = f" ({n['reason']})" if n.get("reason") else ""
        text = f"{n['category']} «{n['template']}»: {n['status']}{reason}"
        out.append(Line(str(n["at"]), "notify", text))
    return sorted(out, key=lambda line: line.at)


def summary(story: Story) -> list[str]:
    """The answers to 'I won but got no message' before the detail."""
    notices = notice_of_grant(story)
    granted = [g for g in story.grants if g["status"] == "granted"]
    untold = [g for g in granted if notices.get(int(g["grant_id"]), {}).get("status")
              not in ("sent", "delivered")]  # fmt: skip
    overdue = [g for g in granted if g.get("fulfilment") == "overdue"]
    out = [f"user {story.user_id}"]
    for service in story.unknown_to:
        out.append(f"  {service}: never saw this user (check the id)")
    for service, why in story.unreachable.items():
        out.append(f"  {service}: could not be asked — {why}")
    out.append(
        f"  {len(story.days)} day(s) with activity in scoring; {len(granted)} reward(s) granted, "
        f"{len(untold)} not yet told, {len(overdue)} overdue; {len(story.notices)} notice(s)"
    )
    for g in untold:
        out.append(f"  not yet told: grant #{g['grant_id']} — {told(notices.get(g['grant_id']))}")
    return out


def render(story: Story) -> str:
    body = [f"{line.at[:19]:<19}  {line.service:<7}  {line.text}" for line in lines(story)]
    return "\n".join([*summary(story), "", *body])
