"""Simulate a campaign version (SPEC §5, §9, §10 Versions): run it over a past range of stored
metrics in a READ ONLY transaction — side effects are impossible, not merely avoided — and,
when another version is live, the difference from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain import draws
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.decisions import GrantDecision, distinct
from services.rewards.domain.periods import Period
from services.rewards.domain.rules.base import RealTimeKind
from services.rewards.domain.rules.registry import kind_of
from services.rewards.domain.simulation import Simulation, diff, outcome, summary
from services.rewards.store import campaigns
from services.rewards.store.draws import revealed_seeds
from services.rewards.store.inputs import DrawFn, StoredInputs
from shared.auth import Principal
from shared.errors import EngageError, ValidationFailed
from shared.failures import failure_reason, is_transient
from shared.ownership import check_team


@dataclass(frozen=True, slots=True)
class SimulationRequest:
    campaign_id: str
    version: int
    first: date
    last: date
    sample: int  # grants listed in full
    against: int | None = None  # the version to compare with; None = the live one


async def simulate_version(
    sessions: async_sessionmaker[AsyncSession],
    request: SimulationRequest,
    reader: Principal,
    tz: ZoneInfo,
    now: datetime,
) -> dict[str, Any]:
    """The version's grants over [first, last], their summary and the diff from the live one.

    Only by a reader of the campaign's team (or admin). A version that cannot be simulated (a
    stored definition that no longer validates, a window whose periods cannot be represented, a
    stored value that is not a number) is the request's problem: 422 `simulation_failed` with
    the reason, not a 500.
    """
    r = request
    try:
        async with sessions() as session, session.begin():
            await session.execute(campaigns.READ_ONLY)
            doc = await campaigns.get(session, r.campaign_id)
            check_team(reader, doc["team"], f"campaign {r.campaign_id}")  # before the version
            definition = await campaigns.version_definition(session, r.campaign_id, r.version)
            _check_overlap(r, definition, tz)
            candidate = await _simulate(session, r, definition, tz, now)
            against, compared = None, None
            other = r.against if r.against is not None else doc["live_version"]
            if other is not None and other != r.version:
                other_definition = await campaigns.version_definition(session, r.campaign_id, other)
                baseline = await _simulate(session, r, other_definition, tz, now)
                against = {"against_version": other, **diff(candidate, baseline, r.sample)}
                compared = {"version": other, **summary(baseline, r.sample)}
    except EngageError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        raise ValidationFailed(
            f"the simulation failed: {failure_reason(exc)}", code="simulation_failed"
        ) from exc
    return {
        "campaign_id": r.campaign_id,
        "version": r.version,
        "from_day": r.first,
        "to_day": r.last,
        **summary(candidate, r.sample),
        "against": compared,
        "diff": against,
    }


def _check_overlap(r: SimulationRequest, definition: CampaignDefinition, tz: ZoneInfo) -> None:
    """A range outside the version's window would say `grants: 0` about nothing: 422 (SPEC §9)."""
    first, last = definition.window.days(tz)
    if r.last < first or r.first > last:
        raise ValidationFailed(
            f"from/to: the range {r.first}..{r.last} does not overlap version {r.version}'s "
            f"window {first}..{last} (local days); nothing to simulate",
            code="range_outside_window",
            extra={"errors": [{"field": "from", "message": "outside the version's window"}]},
        )


async def _simulate(
    session: AsyncSession,
    r: SimulationRequest,
    definition: CampaignDefinition,
    tz: ZoneInfo,
    now: datetime,
) -> Simulation:
    """What `definition` grants for the periods within [first, last] that have ended, and its
    thresholds on the range's stored values."""
    draw = _simulated_draws(r.campaign_id, await revealed_seeds(session, r.campaign_id))
    inputs = StoredInputs.of(session, r.campaign_id, definition, tz, draw)
    decisions: list[GrantDecision] = []
    for rule in definition.rules:
        kind = kind_of(rule)
        decided = await kind.replay(rule, r.first, r.last, now, inputs)
        if isinstance(kind, RealTimeKind) and kind.capped(rule):
            decided = kind.cap(rule, distinct(decided), {}, 0)
        decisions += decided
    return outcome(decisions, {str(k): v for k, v in definition.budgets.items()})


def _simulated_draws(campaign_id: str, revealed: dict[tuple[str, str], str]) -> DrawFn:
    """Draw with the revealed seed if the real draw happened, else with a stand-in."""

    async def draw(
        rule_id: str, period: Period, entries: list[str], winners: int, repeat: bool
    ) -> list[str]:
        seed = revealed.get((rule_id, period.label)) or draws.stand_in_seed(
            campaign_id, rule_id, period.label
        )
        return draws.draw(seed, entries, winners, repeat)

    return draw
