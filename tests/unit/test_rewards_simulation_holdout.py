"""A simulation holds out whom live evaluation holds out (SPEC §12, issue 16): a held-out
would-be winner is listed `held_out`, counted apart from the granted ones, and spends no
budget and no money; a campaign without a committed seed is simulated with a public stand-in;
two versions compared use the one seed. Membership is recomputed here by the reference
(tests/reference/report_model.py), not by the code under test."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

from services.rewards.api.schemas import SimulationResult
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.holdout import COMMITTED, STAND_IN, SimulatedHoldout
from services.rewards.domain.simulation import diff, outcome, summary
from tests.reference.report_model import is_held_out

CAMPAIGN = "cmp_0000000051a1"
SEED = "5eed" * 16
USERS = [f"u{i:03d}" for i in range(200)]


def decision(user: str, rule_id: str = "r", **items: int) -> GrantDecision:
    return GrantDecision(
        rule_id, "user", user, "2026-10", tuple((items or {"points": 10}).items()),
        date(2026, 11, 10),
    )  # fmt: skip


def holdout(percent: int, seed: str | None = SEED) -> SimulatedHoldout:
    made = SimulatedHoldout.of(CAMPAIGN, seed, percent)
    assert made is not None
    return made


def statuses(decisions: list[GrantDecision], status: list[str]) -> dict[str, str]:
    return {d.user_id: s for d, s in zip(decisions, status, strict=True)}


def test_exactly_the_users_the_hmac_holds_out_are_held_out() -> None:
    sim = outcome([decision(u) for u in USERS], {}, holdout(20))
    expected = {u for u in USERS if is_held_out(SEED, u, 20)}
    got = statuses(sim.decisions, sim.statuses)
    assert {u for u, s in got.items() if s == "held_out"} == expected
    assert {u for u, s in got.items() if s == "granted"} == set(USERS) - expected
    assert 20 < len(expected) < 70  # about 40 of 200


def test_held_out_users_spend_no_budget_so_the_budget_reaches_later_users() -> None:
    held = [u for u in USERS if is_held_out(SEED, u, 20)]
    treated = [u for u in USERS if u not in held]
    budget = 10 * 100  # room for the first 100 treated users, whoever is held out before them
    sim = outcome([decision(u) for u in USERS], {"points": budget}, holdout(20))
    got = statuses(sim.decisions, sim.statuses)
    assert [u for u in USERS if got[u] == "granted"] == treated[:100]
    assert [u for u in USERS if got[u] == "budget_exhausted"] == treated[100:]
    assert sim.budget_use == {"points": {"units": budget, "budget": budget}}


def test_the_summary_counts_held_out_apart_and_prices_only_granted_grants() -> None:
    decisions = [decision(u, credit_fen=200, data_mb=100) for u in USERS]
    sim = outcome(decisions, {}, holdout(10), prices={"data_mb": 3})
    n_held = sum(is_held_out(SEED, u, 10) for u in USERS)
    n_granted = len(USERS) - n_held
    doc = summary(sim, sample=500)
    assert (doc["grants"], doc["granted"], doc["held_out"]) == (len(USERS), n_granted, n_held)
    assert doc["by_rule"] == {"r": {"granted": n_granted, "held_out": n_held}}
    assert doc["units"] == {"credit_fen": 200 * n_granted, "data_mb": 100 * n_granted}
    assert doc["money_fen"] == {"credit_fen": 200 * n_granted, "data_mb": 300 * n_granted}
    assert doc["money_fen_total"] == 500 * n_granted
    assert doc["budget_use"]["credit_fen"]["units"] == 200 * n_granted
    assert {s["user_id"] for s in doc["sample"] if s["status"] == "held_out"} == {
        u for u in USERS if is_held_out(SEED, u, 10)
    }


def test_the_result_says_which_seed_and_never_shows_the_committed_one() -> None:
    doc = summary(outcome([decision("u1")], {}, holdout(10)), sample=1)
    assert doc["holdout"] == {
        "percent": 10,
        "seed_source": COMMITTED,
        "seed_sha256": hashlib.sha256(SEED.encode()).hexdigest(),
    }
    assert SEED not in repr(doc)


def test_a_campaign_never_activated_is_simulated_with_a_public_stand_in_seed() -> None:
    stand_in = holdout(10, seed=None)
    assert stand_in.seed_source == STAND_IN
    public = hashlib.sha256(f"simulation:holdout:{CAMPAIGN}".encode()).hexdigest()
    assert stand_in.holdout.seed == public
    sim = outcome([decision(u) for u in USERS], {}, stand_in)
    got = statuses(sim.decisions, sim.statuses)
    assert {u for u, s in got.items() if s == "held_out"} == {
        u for u in USERS if is_held_out(public, u, 10)
    }
    assert SimulatedHoldout.of("cmp_0000000051a2", None, 10) != stand_in  # per campaign


def test_a_version_without_a_holdout_holds_out_no_one() -> None:
    assert SimulatedHoldout.of(CAMPAIGN, SEED, 0) is None
    sim = outcome([decision(u) for u in USERS], {}, None)
    doc = summary(sim, sample=0)
    assert (doc["granted"], doc["held_out"], doc["holdout"]) == (len(USERS), 0, None)


def test_two_versions_compared_share_the_seed_so_only_the_newly_held_out_change() -> None:
    decisions = [decision(u) for u in USERS]
    candidate = outcome(decisions, {}, holdout(20))
    baseline = outcome(decisions, {}, holdout(10))
    d = diff(candidate, baseline, sample=500)
    newly = {u for u in USERS if is_held_out(SEED, u, 20) and not is_held_out(SEED, u, 10)}
    assert (d["added"], d["removed"], d["changed"]) == (0, 0, len(newly))
    moved = {(c["baseline"]["status"], c["candidate"]["status"]) for c in d["changed_sample"]}
    assert moved == {("granted", "held_out")}
    assert {c["candidate"]["user_id"] for c in d["changed_sample"]} == newly
    assert diff(candidate, outcome(decisions, {}, holdout(20)), 10)["changed"] == 0


def test_the_response_model_keeps_the_holdout_counts_and_seed_source() -> None:
    sim = outcome([decision(u) for u in USERS], {"points": 10**6}, holdout(10), {"points": 1})
    body: dict[str, Any] = {
        "campaign_id": CAMPAIGN,
        "version": 1,
        "from_day": date(2026, 10, 1),
        "to_day": date(2026, 10, 31),
        **summary(sim, sample=2),
        "against": None,
        "diff": None,
    }
    shown = SimulationResult.model_validate(body).model_dump(mode="json", by_alias=True)
    n_held = sum(is_held_out(SEED, u, 10) for u in USERS)
    assert (shown["granted"], shown["held_out"]) == (len(USERS) - n_held, n_held)
    assert shown["money_fen_total"] == 10 * (len(USERS) - n_held)
    assert shown["holdout"]["seed_source"] == "committed" and shown["from"] == "2026-10-01"
