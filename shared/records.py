"""The typed records of the topics between services (SPEC §2), beside the event contract.

Producers build them, consumers validate them; unknown fields are refused, so a field added on
one side without the other is a DLQ record with a reason, not a silent `KeyError` later. Every
record carries `v` (absent = 1, the records published before it existed). Topic names:
shared/topics.py; the fields of metric records: shared/metric_fields.py.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    create_model,
    model_validator,
)

from shared.metric_fields import (
    DAY_POINTS,
    GROUP_MONTH_COUNTERS,
    USER_DAY_COUNTERS,
    USER_MONTH_COUNTERS,
)
from shared.text import SafeText

RECORD_VERSION: Literal[1] = 1
ParamName = Annotated[SafeText, Field(min_length=1, max_length=64)]
ParamText = Annotated[SafeText, Field(max_length=1000)]
EntityId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@+\-]+$")]
MonthLabel = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]
DayLabel = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    v: Literal[1] = RECORD_VERSION


B = TypeVar("B", bound=_Record)


# -- engage.metrics.v1: scoring's changelog, latest state per key ------------------------------


FlagName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class AnomalyFlag(BaseModel):
    """One anomaly scoring flagged on a user-day or group-month (SPEC §14): which rule, why in
    words, and the values that tripped it (e.g. {"messages_per_minute": 41, "limit": 20})."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    name: FlagName
    reason: Annotated[SafeText, Field(min_length=1, max_length=300)]
    values: dict[FlagName, float | int | str] = Field(default_factory=dict, max_length=16)


LifecycleStage = Literal["new", "returning", "resurrecting", "dormant"]
MAX_FRIEND_IDS = 1000


class _UserDayBase(_Record):
    entity: Literal["user"]
    grain: Literal["day"]
    id: EntityId
    period: DayLabel
    flags: list[AnomalyFlag] = Field(default_factory=list, max_length=16)
    # The local day of the user's earliest event (absent in records published before it).
    first_seen: date | None = None
    # The friends this user made this day: pairs whose first `friend_added` (either direction)
    # is the user's, that day (SPEC §9); `friends_added` counts them, this lists at most
    # MAX_FRIEND_IDS (rewards' `user.campaign.new_friends_added` reads them).
    friend_ids: list[EntityId] = Field(default_factory=list, max_length=MAX_FRIEND_IDS)


class _UserMonthBase(_Record):
    entity: Literal["user"]
    grain: Literal["month"]
    id: EntityId
    period: MonthLabel
    active: bool
    # SPEC §12 (absent in records published before them: no stage, not loyal).
    lifecycle: LifecycleStage | None = None
    loyal: bool = False
    first_seen: date | None = None


class _GroupMonthBase(_Record):
    entity: Literal["group"]
    grain: Literal["month"]
    id: EntityId
    period: MonthLabel
    vitality: float
    owner_id: EntityId | None
    name: SafeText | None
    province: str | None
    created_at: datetime | None
    dissolved_at: datetime | None
    member_ids: list[EntityId]
    flags: list[AnomalyFlag] = Field(default_factory=list, max_length=16)


def _with_counters(base: type[B], names: tuple[str, ...]) -> type[B]:
    """`base` plus one integer field per counter name (shared/metric_fields.py)."""
    fields: dict[str, Any] = {n: (int, ...) for n in names}
    return create_model(base.__name__.removeprefix("_").replace("Base", "Record"), __base__=base,
                        **fields)  # fmt: skip


UserDayRecord = _with_counters(_UserDayBase, USER_DAY_COUNTERS + DAY_POINTS)
UserMonthRecord = _with_counters(_UserMonthBase, USER_MONTH_COUNTERS)
GroupMonthRecord = _with_counters(_GroupMonthBase, GROUP_MONTH_COUNTERS)


def _metric_kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('entity')}.{value.get('grain')}"
    return f"{getattr(value, 'entity', None)}.{getattr(value, 'grain', None)}"


METRIC_RECORD: TypeAdapter[Any] = TypeAdapter(
    Annotated[  # type: ignore[arg-type]
        Annotated[UserDayRecord, Tag("user.day")]
        | Annotated[UserMonthRecord, Tag("user.month")]
        | Annotated[GroupMonthRecord, Tag("group.month")],
        Discriminator(
            _metric_kind,
            custom_error_type="unknown_metric",
            custom_error_message="entity/grain must be user/day, user/month or group/month",
        ),
    ]
)


# envelope, attributes, vitality, flags; a user's stage and first day are not numbers
_NOT_COUNTERS = frozenset(_GroupMonthBase.model_fields) | {"lifecycle", "first_seen", "friend_ids"}


def metric_counters(record: BaseModel) -> dict[str, float]:
    """A metric record's counters (`active`, `loyal` as 0/1): the values a condition can name."""
    return {k: float(v) for k, v in record if k not in _NOT_COUNTERS}


# -- engage.grants.v1: rewards' ledger changes, key = the subject's user id --------------------


class GrantItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    kind: str = Field(max_length=32)
    amount: int


class GrantRecord(_Record):
    """A grant recorded (granted or budget_exhausted), revoked, or its fulfilment reported
    (`fulfilled`, `fulfilment_failed`). Records published before fulfilment existed carry no
    fulfilment fields: they default to None."""

    event: Literal["recorded", "revoked", "fulfilled", "fulfilment_failed"]
    grant_id: int
    campaign_id: str = Field(max_length=64)
    campaign_name: str = Field(default="", max_length=200)
    version: int
    rule_id: str = Field(max_length=64)
    role: str = Field(max_length=32)
    user_id: EntityId
    period: str = Field(max_length=32)
    status: Literal["granted", "budget_exhausted", "revoked"]
    items: list[GrantItem]
    fulfil_by: date
    group_id: EntityId | None = None
    revocable: bool = False
    explanation: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    revoke_reason: str | None = Field(default=None, max_length=500)
    fulfilment_status: Literal["pending", "fulfilled", "failed"] | None = None
    fulfilment_reference: str | None = Field(default=None, max_length=128)
    fulfilment_reason: str | None = Field(default=None, max_length=500)
    fulfilment_at: datetime | None = None


# -- engage.fulfilment.v1: the systems that credit rewards, key = the grant id ----------------


class FulfilmentRecord(_Record):
    """A grant's reward credited (`fulfilled`, with the crediting system's reference) or not
    (`failed`, with a reason); idempotent per (grant, status, reference)."""

    grant_id: int = Field(ge=1, le=2**62)
    status: Literal["fulfilled", "failed"]
    reference: SafeText = Field(min_length=1, max_length=128)
    reason: SafeText | None = Field(default=None, min_length=1, max_length=500)
    at: datetime

    @model_validator(mode="after")
    def _failure_has_a_reason(self) -> FulfilmentRecord:
        if self.status == "failed" and self.reason is None:
            raise ValueError("a failed fulfilment needs a 'reason'")
        return self


# -- engage.notify.v1: send requests from other systems -----------------------------------------


class SendRequest(_Record):
    """Send `template` to one user; idempotent per `request_id`."""

    request_id: str = Field(min_length=1, max_length=128)
    user_id: EntityId
    template: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    category: Literal["reward", "marketing", "service"]
    params: dict[ParamName, ParamText | int | float] = Field(default_factory=dict, max_length=50)
    channel: Literal["im", "sms"] = "im"
    locale: Literal["zh-CN", "en"] = "zh-CN"
