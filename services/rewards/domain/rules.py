"""Campaign definitions (SPEC §5): the four rule kinds, rewards and budgets, as validated models.

A change to one rule kind touches its model here and its settlement function in
`domain/settlement.py`. Conditions are parsed by `domain/conditions.py`; an invalid one fails
validation with the path inside the tree (`rules[0].eligibility: all[1].op: ...`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from services.rewards.domain import conditions
from services.rewards.domain.conditions import ConditionError, Node
from shared.text import SafeTextModel
from shared.timebounds import BoundedInstant

RewardKind = Literal["credit_fen", "sms", "mms", "data_mb", "points", "ticket", "prize"]
REWARD_KINDS: tuple[str, ...] = ("credit_fen", "sms", "mms", "data_mb", "points", "ticket", "prize")
MAX_WINDOW = timedelta(days=400)

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


class _Model(SafeTextModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reward(_Model):
    kind: RewardKind
    amount: int = Field(ge=1, le=1_000_000_000, description="Units of `kind` (fen for credit).")
    fulfil_next_month_day: int = Field(
        default=10, ge=1, le=28, description="Fulfilled by this day of the month after the period."
    )


class Weights(_Model):
    growth: float = Field(default=1.0, ge=-1000, le=1000, allow_inf_nan=False)
    activity: float = Field(default=1.0, ge=-1000, le=1000, allow_inf_nan=False)
    bonus: float = Field(default=1.0, ge=-1000, le=1000, allow_inf_nan=False)


class _Rule(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$", description="Stable within a campaign.")
    name: str = Field(default="", max_length=120)

    def scopes(self) -> tuple[str, ...]:
        return ()

    def _check_conditions(self, **trees: Node | None) -> None:
        allowed = self.scopes()
        for field_name, tree in trees.items():
            for metric in conditions.metrics_of(tree):
                try:
                    conditions.parse_metric(metric, allowed)
                except ConditionError as exc:
                    raise ValueError(f"{field_name}: {exc}") from None


def _user_scopes(period: str) -> tuple[str, ...]:
    base = ("user.month", "user.prev_month", "user.campaign")
    return ("user.day", *base) if period == "day" else base


class RankRule(_Rule):
    """Top N groups per partition by vitality (SPEC §4 order) at the end of each month."""

    kind: Literal["rank"]
    period: Literal["month"] = "month"
    partition: Literal["province", "none"] = "province"
    top: int = Field(ge=1, le=10_000)
    weights: Weights = Weights()
    eligibility: Condition | None = None
    owner_reward: Reward | None = None
    member_reward: Reward | None = None

    def scopes(self) -> tuple[str, ...]:
        return ("group.month",)

    @model_validator(mode="after")
    def _check(self) -> RankRule:
        if self.owner_reward is None and self.member_reward is None:
            raise ValueError("a rank rule needs owner_reward, member_reward or both")
        self._check_conditions(eligibility=self.eligibility)
        return self


class ThresholdRule(_Rule):
    """Fires in real time when the condition holds: once per period, or once per campaign."""

    kind: Literal["threshold"]
    entity: Literal["user", "group"] = "user"
    period: Literal["day", "month"] = "day"
    once: Literal["period", "campaign"] = "period"
    condition: Condition
    rewards: list[Reward] = Field(min_length=1, max_length=8)

    def scopes(self) -> tuple[str, ...]:
        if self.entity == "group":
            return ("group.month",)
        # A day threshold fires when the user's day changes; the month is a separate record
        # that may change later without re-evaluating the day: use user.campaign instead.
        return tuple(
            s for s in _user_scopes(self.period) if (self.period, s) != ("day", "user.month")
        )

    @model_validator(mode="after")
    def _check(self) -> ThresholdRule:
        if self.entity == "group" and self.period != "month":
            raise ValueError("group thresholds have period 'month'")
        if "group.month.effective_active_members" in conditions.metrics_of(self.condition):
            raise ValueError(
                "condition: group.month.effective_active_members exists only at settlement"
            )
        self._check_conditions(condition=self.condition)
        return self


class LotteryRule(_Rule):
    """At each period's end, K winners among eligible users by smallest HMAC (verifiable)."""

    kind: Literal["lottery"]
    period: Literal["day", "month"] = "day"
    eligibility: Condition | None = None
    tickets: MetricName | None = Field(
        default=None, description="Tickets per entrant from this metric; absent = 1 ticket."
    )
    winners: int = Field(ge=1, le=1_000_000)
    repeat_winners: bool = Field(default=False, description="May one user win several tickets?")
    rewards: list[Reward] = Field(min_length=1, max_length=8)

    def scopes(self) -> tuple[str, ...]:
        return _user_scopes(self.period)

    @model_validator(mode="after")
    def _check(self) -> LotteryRule:
        self._check_conditions(eligibility=self.eligibility)
        if self.tickets is not None:
            try:
                conditions.parse_metric(self.tickets, self.scopes())
            except ConditionError as exc:
                raise ValueError(f"tickets: {exc}") from None
        return self


class ScaledRule(_Rule):
    """At each period's end: amount_per_unit × metric, from min_amount, capped; to the user or
    the group's owner."""

    kind: Literal["scaled"]
    entity: Literal["user", "group"] = "group"
    period: Literal["day", "month"] = "month"
    eligibility: Condition | None = None
    metric: MetricName
    reward_kind: RewardKind
    amount_per_unit: int = Field(ge=1, le=1_000_000_000)
    min_amount: int = Field(default=1, ge=1, description="Smaller amounts grant nothing.")
    cap: int | None = Field(default=None, ge=1, description="Largest amount per grant.")
    fulfil_next_month_day: int = Field(default=10, ge=1, le=28)
    revoke_if_group_dissolved: bool = Field(
        default=False, description="Revoke an unfulfilled grant when its group is dissolved."
    )

    def scopes(self) -> tuple[str, ...]:
        return ("group.month",) if self.entity == "group" else _user_scopes(self.period)

    @model_validator(mode="after")
    def _check(self) -> ScaledRule:
        if self.entity == "group" and self.period != "month":
            raise ValueError("group rules have period 'month'")
        if self.revoke_if_group_dissolved and self.entity != "group":
            raise ValueError("revoke_if_group_dissolved needs entity 'group'")
        self._check_conditions(
            eligibility=self.eligibility, metric=conditions.Leaf(self.metric, ">=", 0)
        )
        return self


Rule = Annotated[RankRule | ThresholdRule | LotteryRule | ScaledRule, Field(discriminator="kind")]
PERIOD_END_KINDS = ("rank", "lottery", "scaled")


class CampaignDefinition(_Model):
    """What a campaign version says; every grant records the version it came from."""

    name: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=2000)
    starts_at: BoundedInstant  # SPEC §16: a window past 2099 would stop settlement
    ends_at: BoundedInstant
    enrollment_required: bool = Field(
        default=False, description="Group rules consider only groups enrolled by their owner."
    )
    budgets: dict[RewardKind, int] = Field(
        default_factory=dict, description="Most units of each kind ever granted; absent = no limit."
    )
    rules: list[Rule] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _check(self) -> CampaignDefinition:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > MAX_WINDOW:
            raise ValueError(f"a campaign window is at most {MAX_WINDOW.days} days")
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique within a campaign")
        for kind, units in self.budgets.items():
            if not 0 <= units <= 10**15:
                raise ValueError(f"budgets.{kind}: must be between 0 and 1e15")
        return self

    def rule(self, rule_id: str) -> RankRule | ThresholdRule | LotteryRule | ScaledRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)
