"""Simulate a campaign version (SPEC §5, §9, §10 Versions): run it over a past range of stored
metrics in a READ ONLY transaction — side effects are impossible, not merely avoided — and,
when another version is live, the difference from it. Held-out users (SPEC §12) are marked
`held_out` as live evaluation records them: with the campaign's committed holdout seed, or a
stand-in before it has one (domain/holdout.py `SimulatedHoldout`), the same for both versions."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence, Set
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.rewards.domain import draws
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.decisions import GrantDecision, distinct
from services.rewards.domain.holdout import SimulatedHoldout
from services.rewards.domain.periods import Period
from services.rewards.domain.rules.base import RealTimeKind
from services.rewards.domain.rules.registry import kind_of
from services.rewards.domain.simulation import Simulation, diff, outcome, summary
from services.rewards.domain.simulation_cost import SimulationCost
from services.rewards.store import bounds, campaigns, holdouts
from services.rewards.store.draws import revealed_seeds
from services.rewards.store.inputs import DrawFn, StoredInputs
from shared.auth import Principal
from shared.db import make_engine, make_sessionmaker
from shared.errors import EngageError, Unavailable, ValidationFailed
from shared.failures import failure_reason, is_transient
from shared.heavy import in_own_thread
from shared.ownership import check_team


@dataclass(frozen=True, slots=True)
class SimulationRequest:
    campaign_id: str
    version: int
    first: date
    last: date
    sample: int  # grants listed in full
    against: int | None = None  # the version to compare with; None = the live one


@dataclass(frozen=True, slots=True)
class SimulationLimits:
    """How much one simulation may cost (SPEC §15; `REWARDS_SIMULATION_*`)."""

    max_user_days: int = 100_000_000
    timeout_s: float = 120.0
    max_rss_mb: int = 1024
    own_thread: bool = True  # on an event loop (and engine) of its own in a worker thread
    thread_nice: int = 10  # that thread's scheduling priority (Linux nice; 0 = the loop's)


async def simulate_version(
    sessions: async_sessionmaker[AsyncSession],
    request: SimulationRequest,
    reader: Principal,
    tz: ZoneInfo,
    now: datetime,
    limits: SimulationLimits | None = None,
) -> dict[str, Any]:
    """The version's grants over [first, last], their summary and the diff from the live one.

    Only by a reader of the campaign's team (or admin). A version that cannot be simulated (a
    stored definition that no longer validates, a window whose periods cannot be represented, a
    stored value that is not a number) is the request's problem: 422 `simulation_failed` with
    the reason, not a 500. Bounded (SPEC §15): an estimate over `limits.max_user_days` is 422
    `simulation_too_large` before any row is read, so is a run whose memory passes
    `limits.max_rss_mb`; past `limits.timeout_s` the work and its statement are cancelled (503
    `simulation_timeout`).
    """
    limits = limits or SimulationLimits()
    try:
        async with asyncio.timeout(limits.timeout_s):
            if not limits.own_thread:
                return await _bounded_simulation(sessions, request, reader, tz, now, limits)
            engine: AsyncEngine = sessions.kw["bind"]
            async with sessions() as session:
                search_path = await bounds.search_path(session)
            url = engine.url.render_as_string(hide_password=False)
            return await in_own_thread(
                lambda: _on_own_engine(url, search_path, request, reader, tz, now, limits),
                nice=limits.thread_nice,
            )
    except TimeoutError:
        raise _timed_out(limits) from None
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == QUERY_CANCELED:  # the statement timeout
            raise _timed_out(limits) from exc
        raise


async def _on_own_engine(
    url: str,
    search_path: str,
    r: SimulationRequest,
    reader: Principal,
    tz: ZoneInfo,
    now: datetime,
    limits: SimulationLimits,
) -> dict[str, Any]:
    """The simulation on a connection of its own (the worker thread's loop cannot use the
    service's pool, whose connections belong to the main loop)."""
    engine = make_engine(url, search_path, pool_size=1)
    try:
        return await _bounded_simulation(make_sessionmaker(engine), r, reader, tz, now, limits)
    finally:
        await engine.dispose()


async def _bounded_simulation(
    sessions: async_sessionmaker[AsyncSession],
    r: SimulationRequest,
    reader: Principal,
    tz: ZoneInfo,
    now: datetime,
    limits: SimulationLimits,
) -> dict[str, Any]:
    guard = MemoryGuard(limits.max_rss_mb)
    try:
        async with sessions() as session, session.begin():
            await session.execute(campaigns.READ_ONLY)
            await bounds.bound_statements(session, limits.timeout_s)
            doc = await campaigns.get(session, r.campaign_id)
            check_team(reader, doc["team"], f"campaign {r.campaign_id}")  # before the version
            definition = await campaigns.version_definition(session, r.campaign_id, r.version)
            _check_overlap(r, definition, tz)
            other = r.against if r.against is not None else doc["live_version"]
            other_definition = None
            if other is not None and other != r.version:
                other_definition = await campaigns.version_definition(session, r.campaign_id, other)
            await _check_cost(session, r, [definition, other_definition], limits)
            seed = await holdouts.seed_of(session, r.campaign_id)  # one seed for both versions
            candidate = await _simulate(session, r, definition, seed, tz, now, guard)
            against, compared = None, None
            if other_definition is not None:
                baseline = await _simulate(session, r, other_definition, seed, tz, now, guard)
                against = {"against_version": other, **diff(candidate, baseline, r.sample)}
                compared = {"version": other, **summary(baseline, r.sample)}
    except (EngageError, TimeoutError):
        raise
    except Exception as exc:
        if is_transient(exc) or _canceled(exc):
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


QUERY_CANCELED = "57014"


def _canceled(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == QUERY_CANCELED


class SimulationTimedOut(Unavailable):
    code, title = "simulation_timeout", "Simulation took too long"


def _timed_out(limits: SimulationLimits) -> EngageError:
    return SimulationTimedOut(
        f"the simulation ran longer than {limits.timeout_s:g} s (REWARDS_SIMULATION_TIMEOUT_S) "
        "and was cancelled: narrow it (a shorter range, fewer rules) or retry when the service "
        "is less busy",
        retry_after_s=30,
    )


async def _check_cost(
    session: AsyncSession,
    r: SimulationRequest,
    definitions: list[CampaignDefinition | None],
    limits: SimulationLimits,
) -> None:
    """422 `simulation_too_large` when the estimated user-days are over the budget."""
    rules = sum(len(d.rules) for d in definitions if d is not None)
    bare = SimulationCost.of(r.first, r.last, rules, 0)
    users = await bounds.users_with_days(session, bare.users_to_refuse(limits.max_user_days))
    cost = SimulationCost.of(r.first, r.last, rules, users)
    refusal = cost.over(limits.max_user_days)
    if refusal is not None:
        raise ValidationFailed(
            refusal,
            code="simulation_too_large",
            extra={
                "estimate_user_days": cost.user_days,
                "limit_user_days": limits.max_user_days,
                "days": cost.days,
                "rules": cost.rules,
                "users": cost.users,
            },
        )


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
    holdout_seed: str | None,
    tz: ZoneInfo,
    now: datetime,
    guard: MemoryGuard,
) -> Simulation:
    """What `definition` grants for the periods within [first, last] that have ended, and its
    thresholds on the range's stored values; its held-out users by `holdout_seed` (the
    campaign's committed one, None = not committed yet: a stand-in)."""
    draw = _simulated_draws(r.campaign_id, await revealed_seeds(session, r.campaign_id))
    inputs = GuardedInputs(
        session, r.campaign_id, definition.window, definition.enrollment_required, tz, draw
    )
    inputs.guard = guard
    decisions: list[GrantDecision] = []
    for rule in definition.rules:
        kind = kind_of(rule)
        decided = await kind.replay(rule, r.first, r.last, now, inputs)
        if isinstance(kind, RealTimeKind) and kind.capped(rule):
            decided = kind.cap(rule, distinct(decided), {}, 0)
        decisions += decided
        guard.check()
    holdout = SimulatedHoldout.of(r.campaign_id, holdout_seed, definition.holdout_percent)
    budgets = {str(k): v for k, v in definition.budgets.items()}
    return outcome(decisions, budgets, holdout, definition.unit_prices)


class MemoryGuard:
    """Stops a simulation whose process grew past `max_rss_mb` (the grants it holds), and lets
    the event loop serve other requests between users: the running sums are Python, and a
    fetch of 10,000 rows is worked through without an await."""

    YIELD_EVERY = 64  # users between two yields to the loop
    CHECK_EVERY = 4096  # users between two reads of the resident size

    def __init__(self, max_rss_mb: int) -> None:
        self.max_rss_mb = max_rss_mb
        self.users = 0

    async def tick(self) -> None:
        self.users += 1
        if self.users % self.YIELD_EVERY == 0:
            await asyncio.sleep(0)
        if self.users % self.CHECK_EVERY == 0:
            self.check()

    def check(self) -> None:
        mb = resident_mb()
        if mb is not None and mb > self.max_rss_mb:
            raise ValidationFailed(
                f"the simulation made the service hold {mb:,.0f} MB, over the limit of "
                f"{self.max_rss_mb:,} MB (REWARDS_SIMULATION_MAX_RSS_MB), and was stopped: "
                "narrow it (a shorter range, fewer rules, rules with caps on winners)",
                code="simulation_too_large",
                extra={"resident_mb": round(mb), "limit_mb": self.max_rss_mb},
            )


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float | None:
    """This process's resident size now (Linux), None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return None


@dataclass(slots=True)
class GuardedInputs(StoredInputs):
    """Stored inputs whose user-by-user stream passes the memory guard."""

    guard: MemoryGuard | None = None

    async def user_series(
        self, first: date, last: date, fields: Set[str], users: Sequence[str] | None = None
    ) -> AsyncIterator[tuple[str, list[tuple[date, dict[str, float]]]]]:
        async for user_id, rows in StoredInputs.user_series(self, first, last, fields, users):
            if self.guard is not None:
                await self.guard.tick()
            yield user_id, rows


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
