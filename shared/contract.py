"""The event contract of SPEC §3: one source of truth for ingest, consumers and the JSON Schema.

Validation is strict: unknown fields (including fields that belong to another event type) are
rejected, integers are never coerced from strings or floats, and `occurred_at` must be RFC 3339
with an explicit offset. The time window depends on when the event was received, so it is
checked with a validation context (`WindowContext`) rather than against the wall clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from shared.text import check_text, check_tree
from shared.timebounds import OutOfSpan, check_instant

MAX_BATCH_EVENTS = 500
MAX_BODY_BYTES = 1024 * 1024
MAX_PROPERTIES_BYTES = 4 * 1024
MAX_AGE = timedelta(days=35)
MAX_FUTURE = timedelta(minutes=5)
_OUT_OF_SPAN = "occurred_at: cannot be stored:"  # → code out_of_range

EVENT_TYPES = (
    "message",
    "login",
    "logout",
    "group_created",
    "group_join",
    "group_leave",
    "group_dissolved",
    "group_owner_changed",
    "points",
    "bonus_card",
    "friend_added",
    "checkin",
)
PROVINCES = [
    "BJ",
    "TJ",
    "HE",
    "SX",
    "NM",
    "LN",
    "JL",
    "HL",
    "SH",
    "JS",
    "ZJ",
    "AH",
    "FJ",
    "JX",
    "SD",
    "HA",
    "HB",
    "HN",
    "GD",
    "GX",
    "HI",
    "CQ",
    "SC",
    "GZ",
    "YN",
    "XZ",
    "SN",
    "GS",
    "QH",
    "NX",
    "XJ",
    "TW",
    "HK",
    "MO",
]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(value: object) -> datetime:
    """Parse an RFC 3339 timestamp that carries an offset (`Z` or `±hh:mm`)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a UTC offset")
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(
            "must be an RFC 3339 timestamp with an offset, e.g. 2026-11-01T08:30:00+08:00"
        )
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {exc}") from None


Rfc3339 = Annotated[
    datetime,
    BeforeValidator(parse_rfc3339),
    Field(json_schema_extra={"type": "string", "format": "date-time"}),
]
EntityId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@+\-]+$")
]
EventId = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
    Field(json_schema_extra={"format": "uuid"}),
]
Client = Literal["pc", "mobile", "sms"]
Province = Literal[
    "BJ",
    "TJ",
    "HE",
    "SX",
    "NM",
    "LN",
    "JL",
    "HL",
    "SH",
    "JS",
    "ZJ",
    "AH",
    "FJ",
    "JX",
    "SD",
    "HA",
    "HB",
    "HN",
    "GD",
    "GX",
    "HI",
    "CQ",
    "SC",
    "GZ",
    "YN",
    "XZ",
    "SN",
    "GS",
    "QH",
    "NX",
    "XJ",
    "TW",
    "HK",
    "MO",
]
ShortText = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(check_text)
]


@dataclass(frozen=True, slots=True)
class WindowContext:
    """When the event was received and how old it may be (None = any age: historical import)."""

    received_at: datetime
    max_age: timedelta | None = MAX_AGE
    max_future: timedelta = MAX_FUTURE


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    event_id: EventId = Field(description="UUID chosen by the client; a retry reuses it.")
    occurred_at: Rfc3339 = Field(description="RFC 3339 with an offset.")
    user_id: EntityId = Field(description="The actor (for group_created, the owner).")
    client: Client | None = None
    properties: dict[str, Any] | None = Field(
        default=None, description="Free-form, ≤ 4 KiB serialised, carried but not interpreted."
    )

    @field_validator("properties")
    @classmethod
    def _properties_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_tree(value)
            try:
                size = len(orjson.dumps(value))
            except (TypeError, orjson.JSONEncodeError) as exc:
                raise ValueError(f"not serialisable: {exc}") from None
            if size > MAX_PROPERTIES_BYTES:
                raise ValueError(f"is {size} bytes serialised; at most {MAX_PROPERTIES_BYTES}")
        return value

    @model_validator(mode="after")
    def _within_window(self, info: ValidationInfo) -> _EventBase:
        try:
            check_instant(self.occurred_at)
        except OutOfSpan as exc:
            raise ValueError(f"{_OUT_OF_SPAN} {exc}") from None
        ctx = info.context
        if isinstance(ctx, WindowContext):
            if self.occurred_at > ctx.received_at + ctx.max_future:
                raise ValueError("occurred_at: more than 5 minutes in the future")
            if ctx.max_age is not None and self.occurred_at < ctx.received_at - ctx.max_age:
                raise ValueError(
                    f"occurred_at: older than {ctx.max_age.days} days; "
                    "load history through POST /v1/events:import"
                )
        return self


class _ClientRequired(_EventBase):
    client: Client = Field(description="pc, mobile or sms.")


class MessageEvent(_ClientRequired):
    type: Literal["message"]
    group_id: EntityId | None = Field(default=None, description="Absent = one-to-one chat.")
    to_user_id: EntityId | None = None


class LoginEvent(_ClientRequired):
    type: Literal["login"]
    session_id: ShortText


class LogoutEvent(_ClientRequired):
    type: Literal["logout"]
    session_id: ShortText


class GroupCreatedEvent(_EventBase):
    type: Literal["group_created"]
    group_id: EntityId
    name: ShortText
    province: Province


class GroupJoinEvent(_EventBase):
    type: Literal["group_join"]
    group_id: EntityId


class GroupLeaveEvent(_EventBase):
    type: Literal["group_leave"]
    group_id: EntityId


class GroupDissolvedEvent(_EventBase):
    type: Literal["group_dissolved"]
    group_id: EntityId


class GroupOwnerChangedEvent(_EventBase):
    type: Literal["group_owner_changed"]
    group_id: EntityId = Field(description="The group whose owner changes; `user_id` = new owner.")


class PointsEvent(_EventBase):
    type: Literal["points"]
    delta: Annotated[int, Field(ge=-100_000, le=100_000)]
    reason: ShortText | None = None

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be non-zero")
        return value


class BonusCardEvent(_EventBase):
    type: Literal["bonus_card"]
    group_id: EntityId
    points: Annotated[int, Field(ge=1, le=10_000)]


class FriendAddedEvent(_EventBase):
    type: Literal["friend_added"]
    friend_user_id: EntityId


class CheckinEvent(_EventBase):
    type: Literal["checkin"]
    campaign_id: ShortText


EVENT_MODELS: tuple[type[_EventBase], ...] = (
    MessageEvent,
    LoginEvent,
    LogoutEvent,
    GroupCreatedEvent,
    GroupJoinEvent,
    GroupLeaveEvent,
    GroupDissolvedEvent,
    GroupOwnerChangedEvent,
    PointsEvent,
    BonusCardEvent,
    FriendAddedEvent,
    CheckinEvent,
)
Event = Annotated[
    MessageEvent
    | LoginEvent
    | LogoutEvent
    | GroupCreatedEvent
    | GroupJoinEvent
    | GroupLeaveEvent
    | GroupDissolvedEvent
    | GroupOwnerChangedEvent
    | PointsEvent
    | BonusCardEvent
    | FriendAddedEvent
    | CheckinEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one event of a request was refused; `code` is stable, `message` names the field."""

    code: str
    message: str


_CODE_BY_PYDANTIC_TYPE = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "union_tag_invalid": "unknown_type",
    "union_tag_not_found": "missing_field",
}


def rejection_from(error: ValidationError) -> Rejection:
    """Condense pydantic's errors into one code and a message naming every offending field."""
    parts: list[str] = []
    code = ""
    for err in error.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] in EVENT_TYPES:
            loc = loc[1:]  # drop the discriminator tag pydantic puts first
        field = ".".join(loc) or "type" if err["type"].startswith("union_tag") else ".".join(loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not field and msg.startswith(_OUT_OF_SPAN):
            code = code or "out_of_range"
            parts.append(msg)
            continue
        if not field and msg.startswith("occurred_at:"):
            code = code or "out_of_window"
            parts.append(msg)
            continue
        code = code or _CODE_BY_PYDANTIC_TYPE.get(err["type"], "invalid_field")
        parts.append(f"{field}: {msg}" if field else msg)
    return Rejection(code=code or "invalid_field", message="; ".join(parts))


def validate_event(raw: object, context: WindowContext | None) -> Event | Rejection:
    """Validate one decoded JSON value as an event (SPEC §3)."""
    if not isinstance(raw, dict):
        return Rejection("invalid_event", "an event must be a JSON object")
    try:
        return EVENT_ADAPTER.validate_python(raw, context=context)
    except ValidationError as exc:
        return rejection_from(exc)


# Who vouched for an event (SPEC §14), stamped by ingest, never taken from the client:
# `user` = a user token (the event's user_id is the token's subject), `relay` = an `ingest` key
# (server relay of client event types), `platform` = a `platform` key (every type), `import` =
# an importer's history load. A record without it (written before the field existed, or forced
# onto the topic past ingest) reads as `relay`, the least a server can vouch for: replaying old
# records or the DLQ never grants them the platform's word.
Authority = Literal["user", "relay", "platform", "import"]
AUTHORITIES: tuple[Authority, ...] = ("user", "relay", "platform", "import")


@dataclass(frozen=True, slots=True)
class Envelope:
    """An event as it travels on `engage.events.v1`: the event plus what ingest added."""

    event: Event
    received_at: datetime
    source: str
    authority: Authority = "relay"


def encode_envelope(
    raw_event: dict[str, Any], received_at: str, source: str, authority: Authority
) -> bytes:
    """Serialise a validated event exactly as the client sent it, plus what ingest adds:
    `received_at`, `source` (the key id or `user:<sub>`) and `authority`."""
    return orjson.dumps(
        {**raw_event, "received_at": received_at, "source": source, "authority": authority}
    )


def _envelope_model(event_model: type[BaseModel]) -> type[BaseModel]:
    """The event model plus what ingest adds, with timestamps parsed natively (JSON mode)."""
    return create_model(
        f"{event_model.__name__}Envelope",
        __base__=event_model,
        occurred_at=(AwareDatetime, ...),
        received_at=(AwareDatetime, ...),
        source=(str, ...),
        authority=(Authority, "relay"),
    )


# Consumers validate records straight from bytes (pydantic-core parses the JSON): about half the
# cost of orjson + validate_python with the Python RFC 3339 check, which ingest already applied.
_ENVELOPE_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[  # type: ignore[arg-type]
        Union[tuple(_envelope_model(m) for m in EVENT_MODELS)],  # noqa: UP007
        Field(discriminator="type"),
    ]
)


def decode_envelope(payload: bytes) -> Envelope:
    """Decode a record of `engage.events.v1`; raises ValueError on a malformed record."""
    try:
        record = _ENVELOPE_ADAPTER.validate_json(payload)
    except ValidationError as exc:
        rejection = rejection_from(exc)
        raise ValueError(f"{rejection.code}: {rejection.message}") from None
    return Envelope(
        event=record,
        received_at=record.received_at,
        source=record.source,
        authority=record.authority,
    )
