"""Broadcasts (SPEC §6, §15): a template sent to a segment, created by a campaign owner and
approved by someone else, then fanned out at a paced rate across the send window rather than in
a burst. Cancelling suppresses what has not been sent yet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.notify.domain.fulfilment import render_notice
from services.notify.domain.notices import NewNotification
from services.notify.domain.policy import Policy
from services.notify.domain.templates import Segments, sms_segments
from shared.errors import Conflict, Forbidden

PENDING, APPROVED, CANCELLED = "pending_approval", "approved", "cancelled"
SAMPLE_SIZE = 20  # recipients shown to the approver


@dataclass(frozen=True, slots=True)
class BroadcastDraft:
    """What a campaign owner asks to send."""

    name: str
    template: str
    category: str
    channel: str
    locale: str
    params: dict[str, Any]
    segment: dict[str, Any]
    rate_per_s: float


def source_of(broadcast_id: int) -> str:
    """The notification source of a broadcast's messages."""
    return f"broadcast:{broadcast_id}"


def check_approval(broadcast_id: int, status: str, created_by: str, approver: str) -> None:
    """Only a pending broadcast is approved, and not by its creator (four eyes)."""
    if status != PENDING:
        raise Conflict(f"broadcast {broadcast_id} is {status}", code="invalid_transition")
    if approver == created_by:
        raise Forbidden("a broadcast cannot be approved by its creator", code="self_approval")


def check_cancel(broadcast_id: int, status: str) -> None:
    """A broadcast is cancelled once; before approval nothing was queued, after it what has not
    been sent yet is suppressed."""
    if status == CANCELLED:
        raise Conflict(f"broadcast {broadcast_id} is already cancelled", code="invalid_transition")


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


def fan_out(
    broadcast_id: int,
    draft: BroadcastDraft,
    users: Sequence[str],
    now: datetime,
    policy: Policy,
    tz: ZoneInfo,
) -> list[NewNotification]:
    """One notification per recipient, each due at its paced time."""
    source = source_of(broadcast_id)
    due = paced_schedule(len(users), now, draft.rate_per_s, policy, tz)
    d = draft
    return [
        NewNotification(source, user, d.template, d.category, d.channel, d.locale, d.params, at)
        for user, at in zip(users, due, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class RenderedText:
    """What recipients reading this channel in this locale get (SPEC §11 preview)."""

    channel: str
    locale: str
    text: str
    sms: Segments | None  # the SMS parts it takes, for an SMS text
    template_version: int | None = None  # the template version it was rendered from


def rendered(channel: str, locale: str, body: str, version: int | None) -> RenderedText:
    return RenderedText(
        channel, locale, body, sms_segments(body) if channel == "sms" else None, version
    )


def render_texts(
    texts: Mapping[tuple[str, str], tuple[int, str]], params: Mapping[str, Any], today: date
) -> list[RenderedText]:
    """Each (channel, locale) template version's text rendered with the broadcast's params."""
    return [
        rendered(channel, locale, render_notice(text, params, channel, locale, today), version)
        for (channel, locale), (version, text) in sorted(texts.items())
    ]


def broadcast_of(source: str) -> int | None:
    """The broadcast a notification source belongs to, if it is one's."""
    kind, _, rest = source.partition(":")
    return int(rest) if kind == "broadcast" and rest.isdigit() else None


def segment_summary(segment: Mapping[str, Any]) -> dict[str, Any]:
    """A segment as shown with its broadcast: an explicit list by its size, not every id
    (they are paged at /v1/broadcasts/{id}/recipients)."""
    if segment.get("kind") == "list":
        return {"kind": "list", "user_count": len(segment.get("user_ids", []))}
    return dict(segment)
