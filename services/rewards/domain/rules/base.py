"""What every rule kind shares: rewards, conditions, the rule model's base, the stored values a
rule may ask for (`RuleInputs`, answered by store/inputs.py) and the two shapes of a kind —
settled once per period (`PeriodEndKind`) or evaluated as metric values arrive
(`RealTimeKind`)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence, Set
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
from services.rewards.domain.rules.sums import SumPlan, period_sums
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


def fulfilment(rewards: Sequence[Reward], last_day: date) -> date:
    """When every reward of a grant for the period ending `last_day` is fulfilled."""
    return max(fulfil_by(last_day, r.fulfil_next_month_day) for r in rewards)


def _rule_id(value: Any) -> Any:
    if isinstance(value, str) and not RULE_ID.fullmatch(value):
        raise ValueError(
            "a rule id is 1 to 40 characters: lowercase letters, digits, '_' or '-', starting "
            "with a letter or a digit (e.g. 'weekend-boost')"
        )
    return value


RULE_ID = re.compile(r"[a-z0-9][a-z0-9_\-]{0,39}")
DayOfWeek = Annotated[int, Field(ge=1, le=7, description="1 = Monday … 7 = Sunday")]


class RuleBase(Model):
    id: Annotated[str, BeforeValidator(_rule_id)] = Field(
        description="Stable within a campaign: 1 to 40 lowercase letters, digits, '_' or '-'.",
        examples=["weekend-boost"],
    )
    name: str = Field(default="", max_length=120)
    days_of_week: list[DayOfWeek] | None = Field(
        default=None,
        min_length=1,
        max_length=7,
        description="Only these days' values are summed into the rule's period, and only these "
        "days are evaluated (1 = Monday … 7 = Sunday, SPEC §10); absent = every day.",
        examples=[[6, 7]],
    )

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
    """The user scopes a rule of `period` may read at its period's end: the day only when the
    period is a day; every summed scope as of the period's last day (domain/rules/sums.py)."""
    base = (
        "user.period", "user.week", "user.month", "user.year", "user.campaign",
        "user.prev_month", "user",
    )  # fmt: skip
    return ("user.day", *base) if period == "day" else base


def check_days_of_week(days: Sequence[int] | None) -> None:
    if days is not None and len(set(days)) != len(days):
        raise ValueError("days_of_week: each day at most once")


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

    def user_series(
        self, first: date, last: date, fields: Set[str], users: Sequence[str] | None = None
    ) -> AsyncIterator[tuple[str, list[tuple[date, dict[str, float]]]]]:
        """Each user's stored days in [first, last] (only `fields`), one user at a time in
        user id order, streamed: a backtest of a million users holds one user's days."""
        ...

    async def user_context(
        self, refs: Iterable[tuple[str, date]], metrics: Set[str]
    ) -> dict[tuple[str, date], Values]:
        """The values that are not day sums, for (user, reference day): `user.prev_month.*`
        (the month before the day's), `user.member_of_enrolled_group` (a member, at the end of
        the day's month, of a group enrolled in the campaign); only those `metrics` name."""
        ...

    async def ledger_tickets(self, campaign: str, rule_id: str, period: Period) -> dict[str, int]:
        """Per user, the `ticket` units granted by that campaign's (id or name) rule for
        periods within `period` (SPEC §10 Tickets from the ledger)."""
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


async def period_users(
    inputs: RuleInputs, period: Period, metrics: Set[str], days_of_week: Sequence[int] | None
) -> dict[str, Values]:
    """Every user with a counted stored day in the period, with what `metrics` read as of the
    period's last day (summed scopes: domain/rules/sums.py); a stored row with none of them
    still enters (as zeros).

    A day or month period with every day counted reads the stored day or month rows for its
    own scope (scoring's month is the sum of its days: the same values, one row a user)."""
    own = {f"user.{period.grain}", "user.period"}
    summed = {m for m in metrics if conditions.is_summed(m)}
    month_fields = conditions.USER_MONTH_FIELDS
    stored = (
        days_of_week is None
        and period.grain in ("day", "month")
        and all(m.rpartition(".")[0] in own for m in summed)
        and (period.grain == "day" or all(m.rpartition(".")[2] in month_fields for m in summed))
    )
    if stored:
        names = {m.rpartition(".")[2] for m in summed} | fields_in(metrics, "user.day")
        rows = await inputs.user_rows(period, names)
        out: dict[str, Values] = {}
        for u, v in rows.items():
            vals = {f"user.day.{k}": x for k, x in v.items()} if period.grain == "day" else {}
            for m in summed:
                vals[m] = v.get(m.rpartition(".")[2], 0.0)
            out[u] = vals
    else:
        plan = SumPlan.of(metrics, period.grain, days_of_week, inputs.window, inputs.tz)
        fields = plan.source_fields() | fields_in(metrics, "user.day")
        first = min(plan.earliest(period.last_day), period.first_day)
        out = {}
        async for u, rows_of in inputs.user_series(first, period.last_day, fields):
            inside = [(d, v) for d, v in rows_of if d >= period.first_day and plan.counts(d)]
            if not inside:
                continue
            vals = period_sums(plan, rows_of, period.last_day)
            if period.grain == "day":
                vals |= {f"user.day.{k}": x for k, x in inside[-1][1].items()}
            out[u] = vals
    context = await period_context(inputs, period, metrics, list(out))
    for u, vals in out.items():
        vals.update(context.get(u, {}))
    return out


async def period_context(
    inputs: RuleInputs, period: Period, metrics: Set[str], users: Sequence[str]
) -> dict[str, Values]:
    """The users' values that are not day sums (`RuleInputs.user_context`) at the period's
    last day."""
    found = await inputs.user_context(((u, period.last_day) for u in users), metrics)
    return {u: dict(v) for (u, _), v in found.items()}


# -- the two shapes of a rule kind ---------------------------------------------------------


class RuleModel(Protocol):
    """What flows know of any rule: its id, its kind's name and its period."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def period(self) -> Grain: ...

    @property
    def days_of_week(self) -> list[int] | None: ...


R = TypeVar("R", bound=RuleModel)


@dataclass(frozen=True, slots=True)
class PeriodEndKind(Generic[R]):
    """A kind settled once per period, after its grace (SPEC §5 Settlement)."""

    name: str
    model: type[R]
    reads: Callable[[R], frozenset[str]]  # the metrics a rule of this kind reads
    settle: Callable[[R, Period, RuleInputs], Awaitable[list[GrantDecision]]]
    draws: bool = False  # a verifiable draw per period: its seed is committed at activation
    # The (campaign, rule) whose grants a period's settlement reads: it waits until that
    # rule's periods inside its own have settled and none is held for review.
    reads_grants_of: Callable[[R], tuple[str, str] | None] = lambda _: None
    settles_at_period_end: ClassVar[bool] = True

    async def replay(
        self, rule: R, first: date, last: date, now: datetime, inputs: RuleInputs
    ) -> list[GrantDecision]:
        """Settle every period of the window that lies within [first, last] and has ended: a
        period that ends after `last` had not settled by then (SPEC §9)."""
        out: list[GrantDecision] = []
        for p in inputs.window.periods(rule.period, inputs.tz):
            if first <= p.first_day and p.last_day <= last and p.end <= now:
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
    # Caps on winners (SPEC §10): whether a rule has one, and the decisions that still fit
    # given the grants already recorded per period label and in all.
    capped: Callable[[R], bool] = lambda _: False
    cap: Callable[[R, Sequence[GrantDecision], Mapping[str, int], int], list[GrantDecision]] = (
        lambda _, decisions, __, ___: list(decisions)
    )
    draws: ClassVar[bool] = False
    settles_at_period_end: ClassVar[bool] = False
