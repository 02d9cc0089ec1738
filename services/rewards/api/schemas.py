"""Request and response bodies of the rewards API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.exclusions import MAX_EXCLUDED
from services.rewards.domain.rules.base import RewardKind
from services.rewards.domain.templates import TEMPLATES
from shared.api_deps import ID_PATTERN
from shared.text import SafeTextModel
from shared.timebounds import BoundedDay, BoundedInstant


class _Body(SafeTextModel):
    model_config = ConfigDict(extra="forbid")


class CreateCampaign(_Body):
    """Either a template with its window (and optionally a name), or a full definition."""

    template: str | None = Field(
        default=None,
        description=f"One of {', '.join(TEMPLATES)}.",
        json_schema_extra={"enum": [*TEMPLATES, None]},  # documented; the error names them
    )
    starts_at: BoundedInstant | None = None
    ends_at: BoundedInstant | None = None
    name: str | None = Field(default=None, min_length=1, max_length=120)
    definition: CampaignDefinition | None = None

    @model_validator(mode="after")
    def _one_way(self) -> CreateCampaign:
        if (self.template is None) == (self.definition is None):
            raise ValueError("give either 'template' or 'definition'")
        if self.template is not None:
            if self.template not in TEMPLATES:
                raise ValueError(
                    f"template: unknown '{self.template}' (one of {', '.join(TEMPLATES)})"
                )
            if self.starts_at is None or self.ends_at is None:
                raise ValueError("a template needs 'starts_at' and 'ends_at'")
        elif self.starts_at or self.ends_at or self.name:
            raise ValueError("'starts_at', 'ends_at' and 'name' go inside 'definition'")
        return self


class Enroll(_Body):
    group_id: str = Field(pattern=ID_PATTERN)
    owner_id: str = Field(pattern=ID_PATTERN, description="Must be the group's owner.")


class ExclusionLists(_Body):
    """A campaign's users and groups that never win (SPEC §10)."""

    user_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_EXCLUDED
    )
    group_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_EXCLUDED
    )


class PutExclusions(ExclusionLists):
    reason: str = Field(min_length=1, max_length=500, description="Why the lists change (audited).")


class Exclusions(BaseModel):
    campaign_id: str
    user_ids: list[str]
    group_ids: list[str]


class ExcludeSubjects(ExclusionLists):
    """Held grants of these users or groups in the period become `excluded`, never published."""

    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _names_someone(self) -> ExcludeSubjects:
        if not self.user_ids and not self.group_ids:
            raise ValueError("name at least one of user_ids, group_ids")
        return self


class Released(BaseModel):
    campaign_id: str
    period: str
    released: list[int] = Field(description="Grants now granted and published (once)")
    excluded: list[int] = Field(description="Held grants of subjects on the exclusion list")
    revoked: list[int] = Field(description="Released, then revoked: their group was dissolved")


class NotHeld(BaseModel):
    user_ids: list[str]
    group_ids: list[str]


class Excluded(BaseModel):
    campaign_id: str
    period: str
    reason: str
    excluded: list[int]
    not_held: NotHeld = Field(description="Named subjects with no held grant in the period")


class Revoke(_Body):
    reason: str = Field(min_length=1, max_length=200)


class Fulfil(_Body):
    """A crediting system's report about one grant's reward (SPEC §11)."""

    status: Literal["fulfilled", "failed"]
    reference: str = Field(
        min_length=1, max_length=128, description="The crediting system's id for the credit."
    )
    reason: str | None = Field(
        default=None, min_length=1, max_length=500, description="Why it failed (failed only)."
    )

    @model_validator(mode="after")
    def _failure_has_a_reason(self) -> Fulfil:
        if self.status == "failed" and self.reason is None:
            raise ValueError("reason: a failed fulfilment needs a reason")
        return self


class SimulationRequest(_Body):
    from_day: BoundedDay = Field(alias="from")
    to_day: BoundedDay = Field(alias="to")
    sample: int = Field(default=50, ge=0, le=1000, description="Grants listed in full.")
    against: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="The version to compare with (both results and their diff); absent = the "
        "live version.",
    )
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _range(self) -> SimulationRequest:
        if self.to_day < self.from_day:
            raise ValueError("'to' is before 'from'")
        if (self.to_day - self.from_day).days > 92:
            raise ValueError("a simulation covers at most 93 days")
        return self


class Version(BaseModel):
    version: int
    status: Literal["draft", "submitted", "approved", "active", "paused", "ended", "superseded"]
    definition: dict[str, Any]
    author: str = Field(description="The key that saved this version (see `authors`)")
    authors: list[str] = Field(
        description="Everyone who wrote this version, in the order they first did: whoever "
        "saved it, plus whoever wrote any version still open when it was saved (not yet "
        "approved, newer than the last approved one) and, for a fork, its source. None of "
        "them may approve it, "
        "nor may its submitter or anyone who wrote another version of this campaign with "
        "exactly the same definition (403 `self_approval`, SPEC §15 four eyes)"
    )
    submitted_by: str | None
    approved_by: str | None
    created_at: datetime
    updated_at: datetime


class Budget(BaseModel):
    kind: RewardKind
    total: int
    spent: int
    remaining: int


class Campaign(BaseModel):
    campaign_id: str
    template: str | None
    state: str = Field(description="draft, submitted, approved, active, paused or ended")
    live_version: int | None = Field(description="The version grants come from now")
    created_by: str
    created_at: datetime
    team: str | None = Field(
        description="The team it belongs to (its creator key's; none = made by a key without a "
        "team): only that team's keys and admin keys act on it and its grants"
    )
    versions: list[Version]
    budgets: list[Budget]


class CampaignSummary(BaseModel):
    campaign_id: str
    name: str
    template: str | None
    state: str
    live_version: int | None
    newest_version: int
    created_by: str
    created_at: datetime
    team: str | None = Field(description="The team it belongs to (none: no team)")


class Enrollment(BaseModel):
    campaign_id: str
    group_id: str
    owner_id: str
    enrolled_by: str
    enrolled_at: datetime


class GrantItem(BaseModel):
    kind: RewardKind
    amount: int


class Grant(BaseModel):
    grant_id: int
    campaign_id: str
    version: int
    rule_id: str
    role: str = Field(description="owner, member or user: whose grant within the rule")
    user_id: str
    period: str = Field(description="YYYY-MM-DD, YYYY-MM, or 'campaign' (once per campaign)")
    status: Literal["granted", "budget_exhausted", "revoked", "held", "excluded"] = Field(
        description="held: waits for an approver's review (nothing published); excluded: an "
        "approver excluded its subject (never published)"
    )
    items: list[GrantItem]
    fulfil_by: date
    group_id: str | None
    revocable: bool
    explanation: dict[str, Any] = Field(description="Which values satisfied which condition")
    created_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    fulfilment: Literal["pending", "fulfilled", "failed", "overdue"] | None = Field(
        description="What became of the reward: pending, fulfilled, failed, or overdue (granted, "
        "not fulfilled, and its fulfil_by day has passed in local time); null when the grant "
        "promises nothing (revoked, budget_exhausted)"
    )
    fulfilment_status: Literal["pending", "fulfilled", "failed"] | None = Field(
        description="As reported by the crediting system (pending until it reports)"
    )
    fulfilment_reference: str | None
    fulfilment_reason: str | None
    fulfilment_at: datetime | None
    reviewed_by: str | None = Field(default=None, description="Who released or excluded it")
    reviewed_at: datetime | None = None
    review_reason: str | None = Field(default=None, description="Why it was excluded")


class AnomalyFlag(BaseModel):
    """A flag scoring set on the grant's group-month or its user's day (SPEC §14)."""

    subject: Literal["group", "user"]
    subject_id: str
    period: str
    name: str
    reason: str
    values: dict[str, Any]


class HeldGrant(Grant):
    """A held grant for the approver, with the anomaly flags of its group and user."""

    flagged: bool
    flags: list[AnomalyFlag]


class TimelineGrant(Grant):
    """A grant in a user's timeline, with its campaign's name."""

    campaign_name: str


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    before: Any
    after: Any


class Draw(BaseModel):
    campaign_id: str
    rule_id: str
    period: str
    seed_sha256: str = Field(description="Published when the seed was chosen")
    committed_at: datetime
    period_starts_at: datetime
    committed_before_period: bool
    drawn_at: datetime | None
    version: int | None
    seed: str | None = Field(description="Revealed once drawn")
    entries_digest: str | None
    entry_count: int | None
    winner_count: int | None
    entries: list[str] | None = None
    winners: list[str] | None = None


class Settlement(BaseModel):
    """A settled period, or one whose settlement failed and is retried (SPEC §16)."""

    campaign_id: str
    rule_id: str = Field(description="'*' when the campaign's periods could not be listed")
    period: str = Field(description="YYYY-MM-DD or YYYY-MM; '*' with rule '*'")
    version: int = Field(description="The version settled, or live when it failed")
    status: Literal["settled", "failed"] = "settled"
    settled_at: datetime | None = None
    seconds: float | None = None
    grants: int | None = None
    reason: str | None = Field(default=None, description="Why the last attempt failed")
    attempts: int | None = Field(default=None, description="Failed attempts in a row")
    first_failed_at: datetime | None = None
    last_failed_at: datetime | None = None
    next_attempt_at: datetime | None = Field(
        default=None, description="Not retried before (unless a new version goes live)"
    )
    held: int | None = Field(default=None, description="Grants held for review (SPEC §10)")
    changed_after_settlement: bool | None = Field(
        default=None,
        description="Its inputs changed after it settled (late or imported events); its "
        "grants did not (SPEC §14)",
    )
    changed_subjects: int | None = Field(
        default=None,
        description="Groups or users of the period new since settlement, or whose values of "
        "a metric the rule reads moved",
    )
    max_abs_delta: float | None = Field(
        default=None, description="Largest move of such a metric since settlement"
    )
    last_changed_at: datetime | None = None


class SettlementFailure(BaseModel):
    campaign_id: str
    rule_id: str = Field(description="'*' when the campaign's periods could not be listed")
    period: str
    version: int
    reason: str
    attempts: int
    next_attempt_at: datetime


class SettlementRunResult(BaseModel):
    settled: list[Settlement]
    already_settled: int = Field(description="Due periods another replica settled meanwhile")
    waiting: int = Field(
        default=0,
        description="Due draws whose ledger tickets are not final yet (their source period has "
        "not settled or is held for review); they settle on a later pass",
    )
    failed: list[SettlementFailure] = Field(
        description="Failed this time: recorded with the reason, retried with backoff; "
        "every other due period settled"
    )


class Template(BaseModel):
    name: str
    description: str


class SimulationHoldout(BaseModel):
    """The holdout a simulation applied (SPEC §12)."""

    percent: int = Field(description="The version's `holdout_percent`")
    seed_source: Literal["committed", "stand_in"] = Field(
        description="`committed`: the campaign's own holdout seed (committed at its first "
        "activation), so the held-out users are the ones live evaluation holds out; "
        "`stand_in`: the campaign has no seed yet (never activated), so a public stand-in "
        "(SHA-256 of `simulation:holdout:<campaign id>`, hex) shows how many a holdout "
        "takes — the seed chosen at activation will hold out other users"
    )
    seed_sha256: str = Field(description="SHA-256 of the seed used (never the seed itself)")


class SimulationResult(BaseModel):
    campaign_id: str
    version: int
    from_day: date = Field(serialization_alias="from")
    to_day: date = Field(serialization_alias="to")
    grants: int = Field(
        description="Grants the ledger would record, every status (granted, budget_exhausted, "
        "held_out)"
    )
    granted: int = Field(description="Of which granted: paid and told")
    held_out: int = Field(
        description="Of which `held_out`: would-be winners in the holdout, evaluated like anyone "
        "(they take places under caps and in draws) but never granted, paid or told"
    )
    by_rule: dict[str, dict[str, int]] = Field(description="Grants by rule and status")
    units: dict[str, int] = Field(description="Granted units by reward kind (held-out: none)")
    money_fen: dict[str, int | None] = Field(
        description="Granted units × the version's unit price; null = no price"
    )
    money_fen_total: int = Field(description="Of the kinds with a price")
    budget_use: dict[str, dict[str, int | None]] = Field(
        description="Units spent by granted grants and the budget, per kind (held-out grants "
        "spend none)"
    )
    holdout: SimulationHoldout | None = Field(
        description="The holdout applied; null when the version holds out no one"
    )
    sample: list[dict[str, Any]]
    against: dict[str, Any] | None = Field(
        default=None,
        description="The compared version's own result (`version`, `grants`, `granted`, "
        "`held_out`, `by_rule`, `units`, `money_fen`, `money_fen_total`, `budget_use`, "
        "`holdout`, `sample`), its holdout with its own percent and the same seed; null when "
        "there is none to compare with",
    )
    diff: dict[str, Any] | None = Field(
        description="Against `against` or the live version (null when simulating that version "
        "itself, or when nothing is live); a grant whose status moves between `granted` and "
        "`held_out` is `changed`"
    )


class ForkVersion(_Body):
    """Fork a new draft from a version (SPEC §10 Versions)."""

    from_version: int = Field(ge=1, le=1_000_000, description="The version to copy.")


# -- campaign report (SPEC §12, domain/report.py) -------------------------------------------


class NoticeReason(BaseModel):
    status: str
    reason: str | None = Field(description="Why (a deferral, suppression or failure); null: none")
    n: int = Field(description="Notices")


class ReportPeriod(BaseModel):
    rule_id: str
    period: str
    entrants: int = Field(
        description="Met the eligibility, held tickets, or were members of an enrolled group"
    )
    winners: int = Field(description="Users with a granted grant")
    held_out: int = Field(description="Would-be winners in the holdout (never granted or told)")
    grants: dict[str, int] = Field(description="Grants by status")
    fulfilment: dict[str, int] = Field(
        description="Granted grants: pending, fulfilled, failed, overdue"
    )
    units: dict[str, int] = Field(description="Granted units by reward kind")
    money_fen: dict[str, int | None] = Field(description="Units × unit price; null = no price")
    money_fen_total: int
    told: int | None = Field(
        default=None,
        description="Winners of this rule and period told: at least one of its reward notices "
        "sent or delivered (from notify); null when notify was not asked",
    )
    notices: dict[str, int] | None = Field(
        default=None,
        description="This period's reward notices by status (queued, deferred, sending, sent, "
        "delivered, failed, expired, suppressed); null when notify was not asked. Notices sent "
        "before notify kept their grant's rule and period are in the campaign's `notices` only",
    )
    notice_reasons: list[NoticeReason] | None = Field(
        default=None, description="This period's reward notices by status and reason"
    )


class ReportTotals(BaseModel):
    grants: dict[str, int]
    fulfilment: dict[str, int]
    units: dict[str, int]
    money_fen: dict[str, int | None]
    money_fen_total: int
    money_fen_fulfilled: int
    unpriced_kinds: list[str]


class BudgetDay(BaseModel):
    day: date
    kind: str
    units: int = Field(description="Units recorded that local day that stand granted or held")
    cumulative: int


class FunnelStep(BaseModel):
    step: Literal["reached", "entered", "won", "told", "fulfilled", "active_next_period"]
    users: int | None = Field(description="null: unknown (told, when notify is not wired)")
    of: str | None = Field(description="The step these users are a subset of")
    share: float | None = Field(description="users / the users of `of`")


class UpliftResult(BaseModel):
    metric: str = Field(description="A month metric, in the month after the period won")
    level: float
    n_treated: int
    n_held_out: int
    mean_treated: float | None
    mean_held_out: float | None
    difference: float | None
    ci_low: float | None = Field(description="95% Welch confidence interval of the difference")
    ci_high: float | None
    degrees_of_freedom: float | None
    significant: bool


class HoldoutSeed(BaseModel):
    percent: int
    seed_sha256: str | None = Field(default=None, description="Published at activation")
    committed_at: datetime | None = None
    seed: str | None = Field(default=None, description="Revealed once the campaign has ended")


class NoticeCounts(BaseModel):
    """The campaign's reward notices, every period's and those without one together."""

    counts: dict[str, int] = Field(description="By status")
    reasons: list[dict[str, Any]] | None = Field(
        default=None, description="By status and reason: {status, reason, n}"
    )
    users: dict[str, int] | None = Field(default=None, description="Distinct users per status")
    told_users: int | None = Field(
        default=None, description="Users with at least one notice sent or delivered"
    )
    unattributed: int | None = Field(
        default=None,
        description="Notices of no rule and period (sent before notify kept them); while there "
        "are any, a period without notices of its own shows them as unknown (null)",
    )


class CampaignReport(BaseModel):
    campaign_id: str
    name: str
    version: int
    state: str
    from_day: date = Field(alias="from")
    to_day: date = Field(alias="to")
    generated_at: datetime
    unit_prices: dict[str, float]
    holdout: HoldoutSeed
    periods: list[ReportPeriod]
    totals: ReportTotals
    budgets: list[Budget]
    budget_use: list[BudgetDay]
    notices: NoticeCounts | None = Field(description="From notify; null when rewards cannot ask it")
    funnel: list[FunnelStep]
    uplift: UpliftResult
    kinds: list[str]

    model_config = ConfigDict(populate_by_name=True)
