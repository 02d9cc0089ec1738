"""A campaign definition (SPEC §5): window, enrollment, budgets and rules, as a validated model.

Each rule kind lives in its own module of `domain/rules/`; an invalid condition fails
validation with the path inside the tree (`rules[0].eligibility: all[1].op: ...`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, model_validator

from services.rewards.domain.holdout import MAX_HOLDOUT_PERCENT
from services.rewards.domain.periods import Window
from services.rewards.domain.prices import check_prices
from services.rewards.domain.rules.base import Model, RewardKind
from services.rewards.domain.rules.registry import AnyRule
from shared.timebounds import BoundedInstant

MAX_WINDOW = timedelta(days=400)

Rule = Annotated[AnyRule, Field(discriminator="kind")]


class CampaignDefinition(Model):
    """What a campaign version says; every grant records the version it came from."""

    name: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=2000)
    starts_at: BoundedInstant  # SPEC §16: a window past 2099 would stop settlement
    ends_at: BoundedInstant
    enrollment_required: bool = Field(
        default=False, description="Group rules consider only groups enrolled by their owner."
    )
    review: bool = Field(
        default=False,
        description="Period-end grants are held (nothing published or notified) until an "
        "approver who did not author the version releases the period or excludes subjects "
        "(SPEC §10 Review hold).",
    )
    budgets: dict[RewardKind, int] = Field(
        default_factory=dict, description="Most units of each kind ever granted; absent = no limit."
    )
    rules: list[Rule] = Field(min_length=1, max_length=20)
    unit_prices: dict[RewardKind, float] = Field(
        default_factory=dict,
        description="Fen one unit of each reward kind costs (SPEC §10), for the report's money; "
        "credit_fen is 1 by definition; a kind without a price is reported without money.",
        examples=[{"data_mb": 3, "sms": 5, "mms": 20, "points": 1, "ticket": 0, "prize": 50000}],
    )
    holdout_percent: int = Field(
        default=0,
        ge=0,
        le=MAX_HOLDOUT_PERCENT,
        description="Share of users evaluated but never granted or notified (recorded "
        "`held_out`), chosen by HMAC-SHA256(the campaign's holdout seed, user id) — its SHA-256 "
        "published at activation, the seed once the campaign ends (SPEC §12).",
        examples=[10],
    )

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
        check_prices(self.unit_prices)
        return self

    @property
    def window(self) -> Window:
        return Window(self.starts_at, self.ends_at)
