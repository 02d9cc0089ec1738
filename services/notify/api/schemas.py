"""Request and response bodies of the notify API."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.notify.domain.broadcast import segment_summary
from services.notify.domain.templates import Segments
from services.notify.store.broadcasts import BroadcastRow
from services.notify.usecases.broadcasts import Preview
from services.notify.usecases.templates import TemplateView, VersionView
from shared.api_deps import ID_PATTERN
from shared.pagination import Page
from shared.records import ParamName, ParamText
from shared.text import SafeTextModel
from shared.timebounds import check_day

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _month_in_span(label: str) -> str:
    check_day(date.fromisoformat(f"{label}-01"))  # SPEC §16: scoring refuses other years
    return label


# The document's pattern says the span too (years 2000–2099), so it does not promise more; the
# check itself names the span in its message.
SegmentMonth = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
        json_schema_extra={"pattern": r"^20\d{2}-(0[1-9]|1[0-2])$"},
    ),
    AfterValidator(_month_in_span),
]


class _Body(SafeTextModel):
    model_config = ConfigDict(extra="forbid")


class TemplateBody(_Body):
    category: Literal["reward", "marketing", "service"]
    text: str = Field(min_length=1, max_length=1000, description="`{name}` placeholders")
    placeholders: list[str] = Field(default_factory=list, max_length=20)


class SmsLength(BaseModel):
    encoding: str = Field(description="GSM-7, or UCS-2 (any Chinese character)")
    units: int
    segments: int = Field(description="SMS parts with placeholders empty (a lower bound)")


def _sms_length(s: Segments | None) -> SmsLength | None:
    return SmsLength(encoding=s.encoding, units=s.units, segments=s.count) if s else None


class Template(BaseModel):
    """A template's live version: what notices render."""

    name: str
    channel: Literal["im", "sms"]
    locale: Literal["zh-CN", "en"]
    category: str
    text: str
    placeholders: list[str]
    version: int = Field(description="The live version's number")
    updated_by: str = Field(description="Who wrote the live version")
    updated_at: datetime = Field(description="When it went live")
    approved_by: str | None = Field(description="Its second principal, when it needed one")
    pending_version: int | None = Field(
        default=None, description="A change awaiting a second principal's approval"
    )
    team: str | None = Field(
        default=None,
        description="The team it belongs to (its first author's); none = global, read by every "
        "key, changed only by admin keys and keys without a team (every reward_* template)",
    )
    sms: SmsLength | None = None

    @classmethod
    def of(cls, view: TemplateView) -> Template:
        return cls(
            **asdict(view.template), pending_version=view.pending_version, team=view.team,
            sms=_sms_length(view.sms),
        )  # fmt: skip


class TemplateVersion(BaseModel):
    """One saved version of a template; `pending` ones wait for a second principal (§15)."""

    name: str
    channel: Literal["im", "sms"]
    locale: Literal["zh-CN", "en"]
    version: int
    category: str
    text: str
    placeholders: list[str]
    status: Literal["pending", "live", "superseded", "rejected"]
    review: str | None = Field(description="Why it needs a second principal, when it does")
    authored_by: str
    authored_at: datetime
    decided_by: str | None = Field(description="Who approved or rejected it (or superseded it)")
    decided_at: datetime | None
    sms: SmsLength | None = None

    @classmethod
    def of(cls, view: VersionView) -> TemplateVersion:
        return cls(**asdict(view.version), sms=_sms_length(view.sms))


class TemplateVersionPage(Page[TemplateVersion]):
    """A template's versions, newest first."""


class PolicyBody(_Body):
    daily_cap: int = Field(ge=0, le=1000, description="Sends per user per local day")
    window_start: str = Field(pattern=HHMM, description="Local time (HH:MM) the window opens")
    window_end: str = Field(
        pattern=HHMM, description="Local time (HH:MM) it closes; equal to start = always open"
    )
    ttl_seconds: int = Field(ge=60, le=30 * 86400)
    marketing: bool = Field(description="Marketing messages respect opt-outs")


class Policy(BaseModel):
    category: str
    daily_cap: int
    window_start: str = Field(description="Local time, HH:MM")
    window_end: str = Field(description="Local time, HH:MM")
    ttl_seconds: int
    marketing: bool
    updated_by: str
    updated_at: datetime


class Notification(BaseModel):
    id: int
    source: str = Field(
        description="grant:<id>, request:<id>, broadcast:<id> or resend:<notification id>:<n>"
    )
    user_id: str
    template: str
    category: str
    channel: str
    locale: str
    params: dict[str, Any]
    body: str | None
    status: Literal[
        "queued", "deferred", "sending", "sent", "delivered", "failed", "expired", "suppressed"
    ]
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
    digest_id: int | None = Field(
        description="The digest it went out in (the message id of its lead notification); "
        "null when sent on its own or not yet sent"
    )
    priority: int = Field(description="0 credit reward, 1 other reward, 2 other: who goes first")
    resent_from: int | None = Field(description="The notification this one sends again")


class NotificationPage(Page[Notification]):
    counts: dict[str, int] = Field(description="This user's notifications by status")
    opted_out: bool


class NoticeReason(BaseModel):
    status: str
    reason: str | None
    n: int


class PeriodNoticeCounts(BaseModel):
    """One rule's period of the campaign: the reward notices of its winners."""

    rule_id: str = Field(description="The campaign rule whose grants asked for these notices")
    period: str = Field(description="The rule's period the grants were for (e.g. 2026-03)")
    counts: dict[str, int] = Field(description="This period's notices by status")
    reasons: list[NoticeReason] = Field(
        description="This period's notices by status and reason (why one was deferred, "
        "suppressed or failed)"
    )
    told_users: int = Field(
        description="Winners of this period with at least one of its notices sent or delivered"
    )


class Counts(BaseModel):
    counts: dict[str, int]
    reasons: list[NoticeReason] | None = Field(
        default=None, description="With campaign_id: notices by status and reason"
    )
    users: dict[str, int] | None = Field(
        default=None, description="With campaign_id: distinct users per status"
    )
    told_users: int | None = Field(
        default=None, description="With campaign_id: users with a notice sent or delivered"
    )
    periods: list[PeriodNoticeCounts] | None = Field(
        default=None,
        description="With campaign_id: the same per rule and period, by rule then period. "
        "Notices sent before notify kept their grant's rule and period (migration 0009) count "
        "in the campaign's figures above and in no period; a resent notice counts in its "
        "original's period",
    )
    unattributed: int | None = Field(
        default=None,
        description="With campaign_id: notices of no rule and period (sent before notify kept "
        "them): while there are any, a period without notices of its own may have had some",
    )


class SandboxMessage(BaseModel):
    id: int
    notification_id: int
    channel: str
    user_id: str
    body: str
    at: datetime


class SandboxPage(Page[SandboxMessage]):
    """What the sandbox provider stored, oldest first."""


class ListSegment(_Body):
    kind: Literal["list"]
    user_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        min_length=1, max_length=100_000
    )


class TopGroupsSegment(_Body):
    kind: Literal["top_groups"]
    month: SegmentMonth
    province: str = Field(pattern=r"^[A-Z]{2}$")
    top: int = Field(ge=1, le=500, description="Members of the top N groups (scoring's order)")


class ActiveUsersSegment(_Body):
    kind: Literal["active_users"]
    month: SegmentMonth
    min_activity_points: int = Field(ge=0, le=1_000_000)


Segment = Annotated[
    ListSegment | TopGroupsSegment | ActiveUsersSegment, Field(discriminator="kind")
]


class BroadcastBody(_Body):
    name: str = Field(min_length=1, max_length=120)
    template: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    category: Literal["marketing", "service"]
    channel: Literal["im", "sms"] = "im"
    locale: Literal["zh-CN", "en"] = "zh-CN"
    params: dict[ParamName, ParamText | int | float] = Field(
        default_factory=dict,
        max_length=50,
        description="Template parameters: at most 50, names ≤ 64 characters, texts ≤ 1,000 "
        "(the limits of a send request, shared/records.py)",
    )
    segment: Segment = Field(description="Resolved when the broadcast is approved")
    rate_per_s: float = Field(default=10.0, gt=0, le=1000, description="Fan-out pace")


class SmsParts(BaseModel):
    encoding: str = Field(description="GSM-7, or UCS-2 (any Chinese character)")
    units: int
    segments: int


class RenderedText(BaseModel):
    channel: Literal["im", "sms"]
    locale: str
    text: str = Field(description="The template rendered with the broadcast's params")
    sms: SmsParts | None = Field(description="For SMS: the parts this text takes")
    template_version: int | None = Field(
        default=None, description="The template version it comes from (frozen at approval)"
    )


class BroadcastPreview(BaseModel):
    broadcast_id: int
    status: Literal["pending_approval", "approved", "cancelled"]
    texts: list[RenderedText] = Field(description="Per channel (and its fallback) and locale")
    recipients: int = Field(description="How many users it goes (went) to")
    sample: list[str] = Field(description="The first 20 recipients by user id")

    @classmethod
    def of(cls, p: Preview) -> BroadcastPreview:
        return cls(
            broadcast_id=p.broadcast_id,
            status=p.status,
            texts=[
                RenderedText(
                    channel=t.channel,
                    locale=t.locale,
                    text=t.text,
                    sms=SmsParts(encoding=t.sms.encoding, units=t.sms.units, segments=t.sms.count)
                    if t.sms
                    else None,
                    template_version=t.template_version,
                )
                for t in p.texts
            ],
            recipients=p.recipients,
            sample=p.sample,
        )


class Recipient(BaseModel):
    user_id: str
    notification_id: int | None = Field(description="Once approved: its notification")
    status: str | None = Field(description="Once approved: that notification's status")


class RecipientPage(Page[Recipient]):
    """A broadcast's recipients by user id."""


class Broadcast(BaseModel):
    broadcast_id: int
    name: str
    template: str
    category: str
    channel: str
    locale: str
    params: dict[str, Any]
    segment: dict[str, Any]
    rate_per_s: float
    status: Literal["pending_approval", "approved", "cancelled"]
    created_by: str
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    recipients: int | None
    team: str | None = Field(
        description="The team it belongs to (its creator key's; none = made by a key without a "
        "team): only that team's keys and admin keys act on it"
    )
    counts: dict[str, int] = Field(description="Its notifications by status")

    @classmethod
    def of(cls, row: BroadcastRow) -> Broadcast:
        """A list segment by its size: the ids are paged at .../recipients."""
        return cls(**{**asdict(row), "segment": segment_summary(row.segment)})


class ApprovedBroadcast(Broadcast):
    approved: BroadcastPreview = Field(description="What was approved: texts and recipients")


class TimelineEntry(BaseModel):
    """One notification in a user's timeline."""

    notification_id: int
    at: datetime = Field(description="When it was queued")
    source: str
    template: str
    category: str
    channel: str
    status: Literal[
        "queued", "deferred", "sending", "sent", "delivered", "failed", "expired", "suppressed"
    ]
    reason: str | None
    attempts: int
    digest_id: int | None = Field(description="The digest it went out in, if any")
    sent_channel: str | None
    not_before: datetime
    updated_at: datetime
    resent_from: int | None


class Timeline(Page[TimelineEntry]):
    """Everything notify did for one user, oldest first."""

    user_id: str
