"""What is to be sent (SPEC §6): a notification asked for by a grant, a send request or a
broadcast, and when it is due and expires under its category's policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.notify.domain.messages import describe_rewards
from services.notify.domain.policy import Policy, policy_for
from shared.records import GrantRecord, SendRequest

REWARD_TEMPLATE = "reward_granted"
# Who goes first when a user's cap slots are short (SPEC §11): credit, other rewards, the rest.
CREDIT_FIRST, REWARD, OTHER = 0, 1, 2


@dataclass(frozen=True, slots=True)
class NewNotification:
    """One message to queue; a (source, user, template) is queued at most once."""

    source: str
    user_id: str
    template: str
    category: str
    channel: str
    locale: str
    params: dict[str, Any]
    not_before: datetime | None = None  # None: due at once
    priority: int = OTHER  # lower goes first when cap slots are short
    resent_from: int | None = None  # the notification this one sends again
    # A reward notice's campaign, and its grant's rule and period (a resend: its original's).
    campaign_id: str | None = None
    rule_id: str | None = None
    period: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduledNotification:
    notice: NewNotification
    not_before: datetime
    expires_at: datetime


def schedule(
    notices: Iterable[NewNotification],
    policies: Mapping[str, Policy],
    now: datetime,
    gather: timedelta = timedelta(0),
) -> list[ScheduledNotification]:
    """Each notice is due at its own time (else now) and expires its category's TTL later.

    A reward notice waits `gather` first, so the grants of one settlement that arrive within it
    go out in one digest (SPEC §11) rather than the first alone and the rest in a second."""
    out = []
    for n in notices:
        due = n.not_before or (now + gather if n.template == REWARD_TEMPLATE else now)
        out.append(ScheduledNotification(n, due, policy_for(policies, n.category).expires_at(due)))
    return out


def grant_notice(grant: GrantRecord, locale: str = "zh-CN") -> NewNotification | None:
    """A new granted grant becomes a reward notice; other grant events send nothing."""
    if grant.event != "recorded" or grant.status != "granted":
        return None
    credit = any(i.kind == "credit_fen" for i in grant.items)
    return NewNotification(
        source=f"grant:{grant.grant_id}",
        user_id=grant.user_id,
        template=REWARD_TEMPLATE,
        category="reward",
        channel="im",
        locale=locale,
        params={
            "campaign": grant.campaign_name or grant.campaign_id,
            "rewards": describe_rewards([i.model_dump() for i in grant.items], locale),
            "fulfil_by": grant.fulfil_by.isoformat(),
        },
        priority=CREDIT_FIRST if credit else REWARD,
        campaign_id=grant.campaign_id,
        rule_id=grant.rule_id,
        period=grant.period,
    )


def request_notice(req: SendRequest) -> NewNotification:
    """A send request on engage.notify.v1 is queued as asked."""
    return NewNotification(
        source=f"request:{req.request_id}",
        user_id=req.user_id,
        template=req.template,
        category=req.category,
        channel=req.channel,
        locale=req.locale,
        params=dict(req.params),
        priority=REWARD if req.category == "reward" else OTHER,
    )


def resend_notice(original: NewNotification, original_id: int, nth: int) -> NewNotification:
    """A notice sent again (SPEC §11 care): a new notification of its own, linked to the
    original, through the same policy (cap, window, TTL) as any other. Its campaign, rule and
    period are its original's (the store copies them when the original row has them)."""
    return NewNotification(
        source=f"resend:{original_id}:{nth}",
        user_id=original.user_id,
        template=original.template,
        category=original.category,
        channel=original.channel,
        locale=original.locale,
        params=dict(original.params),
        priority=original.priority,
        resent_from=original_id,
        campaign_id=original.campaign_id,
        rule_id=original.rule_id,
        period=original.period,
    )
