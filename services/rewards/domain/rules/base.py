"""What every rule kind shares: rewards, conditions, the rule model's base, the stored values a
rule may ask for (`RuleInputs`, answered by store/inputs.py) and the two shapes of a kind —
settled once per period (`PeriodEndKind`) or evaluated as metric values arrive
(`RealTimeKind`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from services.rewards.domain import conditions
from services.rewards.domain.conditions import ConditionError, Node
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.exclusions import Exclusions
from services.rewards.domain.groups import GroupMonth
from services.rewards.domain.periods import Grain, Period, Window, fulfil_by
from shared.text import SafeTextModel

RewardKind = Literal["credit_fen", "sms", "mms", "data_mb", "points", "ticket", "prize"]

_CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'A condition tree: {"all": [...]}, {"any": [...]}, {"not": {...}} or a leaf '
    '{"metric": "user.day.online_points", "op": ">=", "value": 4}.',
    "examples": [{"metric": "user.day.checkins", "op": ">=", "value": 1}],
}


def _parse_condition(value: Any) -> Node:
    if isinstance(value, conditions.Leaf | conditions.AllOf | conditions.AnyOf | conditions.NotOf):
        return value
    try:
        return conditions.parse(value)
    except ConditionError as exc:
        raise ValueError(str(exc)) from None


Condition = Annotated[
    Node,
    BeforeValidator(_parse_condition),
    PlainSerializer(conditions.dump, return_type=dict),
    WithJsonSchema(_CONDITION_SCHEMA),
]
MetricName = Annotated[
    str,
    BeforeValidator(lambda v: conditions.parse_metric(v)),
    Field(examples=["user.month.friends_added"]),
]


class Model(SafeTextModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reward(Model):
    kind: RewardKind
    amount: int = Field(ge=1, le=1_000_000_000, description="Units of `kind` (fen for credit).")
    fulfil_next_month_day: int = Field(
        default=10, ge=1, le=28, description="Fulfilled by this day of the month after the period."
    )


def reward_items(rewards: Iterable[Reward], times: int = 1) -> tuple[tuple[str, int], ...]:
    return tuple((r.kind, r.amount * times) for r in rewards)


def fulfilment(rewards: Sequence[Reward], first_day: date) -> date:
    """When every reward of a grant for the period starting `first_day` is fulfilled."""
    return max(fulfil_by(first_day, r.fulfil_next_month_day) for r in rewards)


class RuleBase(Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$", description="Stable within a campaign.")
    name: str = Field(default="", max_length=120)

    def scopes(self) -> tuple[str, ...]:
        """The metric scopes this rule may read."""
        return ()

    def _check_conditions(self, **trees: Node | None) -> None:
        allowed = self.scopes()
        for field_name, tree in trees.items():
            for metric in conditions.metrics_of(tree):
                try:
                    conditions.parse_metric(metric, allowed)
                except ConditionError as exc:
                    raise ValueError(f"{field_name}: {exc}") from None


def user_scopes(period: str) -> tuple[str, ...]:
    base = ("user.month", "user.prev_month", "user.campaign")
    return ("user.day", *base) if period == "day" else base


# -- what a rule reads ---------------------------------------------------------------------

Values = dict[str, float]
UserKey = tuple[str, date]  # (user id, the day or the month's first day)


@dataclass(frozen=True, slots=True)
class NewValues:
    """Metric values that just arrived (a consumed batch) or, in a backtest, a past range's."""

    user_days: Mapping[UserKey, Mapping[str, float]] = field(default_factory=dict)
    user_months: Mapping[UserKey, Mapping[str, float]] = field(default_factory=dict)
    groups: Sequence[GroupMonth] = ()


class RuleInputs(Protocol):
    """The stored metric values of one campaign's rules, as the store answers them — the same
    for settlement, simulation and real-time evaluation, so a simulated version decides
    exactly as the live one would."""

    @property
    def window(self) -> Window: ...

    @property
    def tz(self) -> ZoneInfo: ...

    async def enrolled(self) -> set[str] | None:
        """The campaign's enrolled groups; None when it does not require enrollment."""
        ...

    async def exclusions(self) -> Exclusions:
        """The campaign's users and groups that never win (domain/exclusions.py)."""
        ...

    async def groups(
        self, period: Period, *, members: bool = True, only: Sequence[str] | None = None
    ) -> list[GroupMonth]:
        """The month's groups (only those named); without member lists unless `members`."""
        ...

    async def active_users(self, period: Period, group_ids: Iterable[str]) -> set[str]:
        """Members (at the month's end) of these groups who were active in it."""
        ...

    async def user_rows(
        self, period: Period, fields: Iterable[str] | None = None
    ) -> dict[str, dict[str, float]]:
        """Every user's stored values of the day or month: only `fields`, or all of them."""
        ...

    async def user_days_between(self, first: date, last: date) -> dict[UserKey, Values]:
        """Every stored user-day in [first, last], all fields."""
        ...

    async def with_scopes(
        self, grain: Grain, base: Mapping[UserKey, Mapping[str, float]], metrics: Set[str]
    ) -> dict[UserKey, Values]:
        """`base` as `user.<grain>.*` values, with the other scopes `metrics` read added
        (`user.month`, `user.prev_month`, `user.campaign`)."""
        ...

    async def draw(
        self, rule_id: str, period: Period, entries: list[str], winners: int, repeat: bool
    ) -> list[str]:
        """The winning entries: settlement freezes a real draw, simulation draws with the
        revealed seed or a stand-in (domain/draws.py)."""
        ...


def fields_in(metrics: Iterable[str], scope: str) -> set[str]:
    """The fields of `scope` among `metrics` (`user.day.checkins` → `checkins`,
    `user.day.flags.lockstep` → `flags.lockstep`)."""
    prefix = f"{scope}."
    return {m.removeprefix(prefix) for m in metrics if m.startswith(prefix)}


async def period_users(inputs: RuleInputs, period: Period, metrics: Set[str]) -> dict[str, Values]:
    """Every user with stored values in the period, with what `metrics` read; a stored row
    with none of them still enters (as zeros)."""
    rows = await inputs.user_rows(period, fields_in(metrics, f"user.{period.grain}"))
    base = {(u, period.first_day): v for u, v in rows.items()}
    values = await inputs.with_scopes(period.grain, base, metrics)
    return {u: v for (u, _), v in values.items()}


# -- the two shapes of a rule kind ---------------------------------------------------------


class RuleModel(Protocol):
    """What flows know of any rule: its id, its kind's name and its period."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def period(self) -> Grain: ...


R = TypeVar("R", bound=RuleModel)


@dataclass(frozen=True, slots=True)
class PeriodEndKind(Generic[R]):
    """A kind settled once per period, after its grace (SPEC §5 Settlement)."""

    name: str
    model: type[R]
    reads: Callable[[R], frozenset[str]]  # the metrics a rule of this kind reads
    settle: Callable[[R, Period, RuleInputs], Awaitable[list[GrantDecision]]]
    draws: bool = False  # a verifiable draw per period: its seed is committed at activation
    settles_at_period_end: ClassVar[bool] = True

    async def replay(
        self, rule: R, first: date, last: date, now: datetime, inputs: RuleInputs
    ) -> list[GrantDecision]:
        """Settle every period of the window that starts within [first, last] and has ended."""
        out: list[GrantDecision] = []
        for p in inputs.window.periods(rule.period, inputs.tz):
            if first <= p.first_day <= last and p.end <= now:
                out += await self.settle(rule, p, inputs)
        return out


@dataclass(frozen=True, slots=True)
class RealTimeKind(Generic[R]):
    """A kind that fires as metric values arrive; simulation replays a past range."""

    name: str
    model: type[R]
    reads: Callable[[R], frozenset[str]]
    evaluate: Callable[[R, NewValues, RuleInputs], Awaitable[list[GrantDecision]]]
    replay: Callable[[R, date, date, datetime, RuleInputs], Awaitable[list[GrantDecision]]]
    draws: ClassVar[bool] = False
    settles_at_period_end: ClassVar[bool] = False
