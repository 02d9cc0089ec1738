"""Campaign reports (SPEC §12) without a database: unit prices, holdout membership, Welch's
interval against a planted effect (the reference below is written from the textbook, sharing
no code with services/), and the report's assembly."""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import statistics
from datetime import date

import pytest
from pydantic import ValidationError

from services.rewards.domain import report
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.holdout import Holdout, held_out, t_quantile, uplift
from services.rewards.domain.prices import cost_fen

# -- an independent reference -------------------------------------------------------------------

# Two-sided 95% Student t quantiles from a printed table (df → t_0.975).
T_TABLE = {1: 12.706, 2: 4.303, 5: 2.571, 10: 2.228, 30: 2.042, 100: 1.984, 1000: 1.962}


def reference_welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Difference of means and its 95% Welch interval, with a normal quantile (large n)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    half = 1.959964 * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def reference_held_out(seed: str, user: str, percent: int) -> bool:
    mac = hmac.new(seed.encode(), user.encode(), hashlib.sha256).hexdigest()
    return int(mac, 16) / 2**256 < percent / 100


def definition(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": "Check-in credit",
        "starts_at": "2026-03-01T00:00:00+08:00",
        "ends_at": "2026-05-01T00:00:00+08:00",
        "rules": [
            {
                "kind": "threshold",
                "id": "checkin",
                "period": "month",
                "condition": {"metric": "user.month.checkins", "op": ">=", "value": 3},
                "rewards": [{"kind": "credit_fen", "amount": 200}],
            }
        ],
    }
    return doc | overrides


# -- unit prices ---------------------------------------------------------------------------------


def test_a_campaign_declares_unit_prices_in_fen() -> None:
    d = CampaignDefinition.model_validate(definition(unit_prices={"data_mb": 3, "sms": 5}))
    assert d.unit_prices == {"data_mb": 3, "sms": 5}
    assert cost_fen(d.unit_prices, "data_mb", 1024) == 3072
    assert cost_fen(d.unit_prices, "credit_fen", 200) == 200  # credit is money already
    assert cost_fen(d.unit_prices, "prize", 1) is None  # no price: no money, never 0


@pytest.mark.parametrize(
    "prices", [{"sms": -1}, {"credit_fen": 2}, {"prize": 10**9}, {"bitcoin": 1}]
)
def test_an_impossible_unit_price_is_refused_naming_the_kind(prices: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="unit_prices"):
        CampaignDefinition.model_validate(definition(unit_prices=prices))


def test_fractional_prices_round_to_whole_fen_half_to_even() -> None:
    assert cost_fen({"data_mb": 2.5}, "data_mb", 1) == 2
    assert cost_fen({"data_mb": 2.5}, "data_mb", 3) == 8  # 7.5 → 8


# -- holdout membership -------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [0, 51, -1])
def test_holdout_percent_outside_0_to_50_is_refused_unless_0(percent: int) -> None:
    if percent == 0:
        assert CampaignDefinition.model_validate(definition()).holdout_percent == 0
        return
    with pytest.raises(ValidationError, match="holdout_percent"):
        CampaignDefinition.model_validate(definition(holdout_percent=percent))


def test_holdout_membership_is_recomputable_from_the_revealed_seed() -> None:
    seed = "9f" * 32
    users = [f"u{i:05d}" for i in range(20_000)]
    mine = {u for u in users if held_out(seed, u, 10)}
    assert mine == {u for u in users if reference_held_out(seed, u, 10)}
    assert 0.09 < len(mine) / len(users) < 0.11
    assert Holdout(seed, 10).holds(next(iter(mine)))
    assert not any(held_out(seed, u, 0) for u in users[:1000])


# -- uplift ---------------------------------------------------------------------------------------


def test_t_quantiles_match_the_printed_table() -> None:
    for df, t in T_TABLE.items():
        assert t_quantile(0.975, df) == pytest.approx(t, abs=6e-4)


def simulate(effect: float, seed: int, n: int = 4000) -> tuple[list[float], list[float]]:
    """Would-be winners' next-month activity points: held out by HMAC (10%), treated ones get
    `effect` more on average."""
    rng = random.Random(seed)
    treated: list[float] = []
    control: list[float] = []
    for i in range(n):
        base = max(0.0, rng.gauss(40, 15))
        if reference_held_out(f"seed-{seed}", f"u{i}", 10):
            control.append(base)
        else:
            treated.append(base + effect + rng.gauss(0, 5))
    return treated, control


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_planted_uplift_is_inside_the_interval_and_zero_outside(seed: int) -> None:
    treated, control = simulate(effect=6.0, seed=seed)
    u = uplift(treated, control)
    assert u.ci_low is not None and u.ci_high is not None and u.difference is not None
    assert u.ci_low < 6.0 < u.ci_high
    assert u.ci_low > 0 and u.significant
    diff, low, high = reference_welch(treated, control)
    assert u.difference == pytest.approx(diff)
    assert (u.ci_low, u.ci_high) == pytest.approx((low, high), rel=2e-3)
    assert (u.n_treated, u.n_held_out) == (len(treated), len(control))


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_without_an_effect_the_interval_covers_zero(seed: int) -> None:
    u = uplift(*simulate(effect=0.0, seed=seed))
    assert u.ci_low is not None and u.ci_high is not None
    assert u.ci_low < 0 < u.ci_high and not u.significant


def test_uplift_with_too_few_users_has_no_interval() -> None:
    u = uplift([1.0, 2.0], [3.0])
    assert u.difference == pytest.approx(-1.5) and u.ci_low is None and not u.significant
    assert uplift([], []).mean_treated is None


# -- assembly ---------------------------------------------------------------------------------


def test_period_labels_name_their_days() -> None:
    window = (date(2026, 3, 1), date(2026, 4, 30))
    assert report.period_days("2026-03-05", window) == (date(2026, 3, 5), date(2026, 3, 5))
    assert report.period_days("2026-W10", window) == (date(2026, 3, 2), date(2026, 3, 8))
    assert report.period_days("2026-02", window) == (date(2026, 2, 1), date(2026, 2, 28))
    assert report.period_days("2026", window) == (date(2026, 1, 1), date(2026, 12, 31))
    assert report.period_days("campaign", window) == window


def test_money_per_period_and_funnel_shares() -> None:
    grants = [
        report.GrantCount("r", "2026-03", "granted", "fulfilled", 3),
        report.GrantCount("r", "2026-03", "granted", "pending", 1),
        report.GrantCount("r", "2026-03", "held_out", None, 2),
    ]
    units = [
        report.UnitCount("r", "2026-03", "granted", "fulfilled", "credit_fen", 600),
        report.UnitCount("r", "2026-03", "granted", "pending", "data_mb", 100),
        report.UnitCount("r", "2026-03", "held_out", None, "credit_fen", 400),
    ]
    people = [report.PeopleCount("r", "2026-03", 10, 4, 2)]
    (f,) = report.per_period(grants, units, people, {"data_mb": 3})
    assert f.grants == {"granted": 4, "held_out": 2} and f.fulfilment["fulfilled"] == 3
    assert f.units == {"credit_fen": 600, "data_mb": 100}
    assert f.money_fen == {"credit_fen": 600, "data_mb": 300} and f.money_fen_total == 900
    t = report.totals([f], units, {})
    assert t["money_fen"]["data_mb"] is None and t["unpriced_kinds"] == ["data_mb"]
    assert t["money_fen_fulfilled"] == 600
    steps = report.funnel({"reached": 100, "entered": 10, "won": 4, "told": None})
    assert [s["users"] for s in steps][:4] == [100, 10, 4, None]
    assert steps[1]["share"] == 0.1 and steps[1]["of"] == "reached"
    assert steps[4]["of"] == "won"  # fulfilled is counted among the winners
    csv_text = report.to_csv([f], ["credit_fen", "data_mb"])
    header, line = csv_text.splitlines()
    row = dict(zip(header.split(","), line.split(","), strict=True))
    assert row["grants_held_out"] == "2" and row["money_fen_total"] == "900"


def test_each_period_carries_its_own_notices_and_a_period_without_any_told_no_one() -> None:
    figures = [report.PeriodFigures("r", "2026-03"), report.PeriodFigures("r", "2026-04")]
    march = report.PeriodNotices(
        "r", "2026-03", {"delivered": 3, "suppressed": 1},
        [{"status": "delivered", "reason": None, "n": 3},
         {"status": "suppressed", "reason": "opted_out", "n": 1}], 2,
    )  # fmt: skip
    outside = report.PeriodNotices("r", "2026-02", {"sent": 9}, [], 9)  # not in the report
    got = report.with_notices(figures, [march, outside])
    assert [(f.period, f.told, f.notices) for f in got] == [
        ("2026-03", 2, {"delivered": 3, "suppressed": 1}),
        ("2026-04", 0, {}),
    ]
    assert figures[0].told is None  # the figures given are left as they were
    header, *lines = report.to_csv(got, []).splitlines()
    rows = [dict(zip(header.split(","), line.split(","), strict=True)) for line in lines]
    assert rows[0]["told"] == "2" and rows[0]["notices_delivered"] == "3"
    assert rows[0]["notices_suppressed"] == "1" and rows[0]["notices_failed"] == "0"
    assert rows[1]["told"] == "0"


def test_without_notify_a_periods_notices_are_unknown_not_zero() -> None:
    header, line = report.to_csv([report.PeriodFigures("r", "2026-03")], []).splitlines()
    row = dict(zip(header.split(","), line.split(","), strict=True))
    assert row["told"] == "" and row["notices_sent"] == ""


def test_while_notify_holds_notices_of_no_period_a_period_without_its_own_is_unknown() -> None:
    """Notices sent before notify kept their period could be any period's: a period with none
    of its own says unknown (None, an empty CSV cell), not a zero that may be wrong."""
    figures = [report.PeriodFigures("r", "2026-03"), report.PeriodFigures("r", "2026-04")]
    march = report.PeriodNotices("r", "2026-03", {"delivered": 3}, [], 3)
    got = report.with_notices(figures, [march], unattributed=5)
    assert [(f.period, f.told, f.notices) for f in got] == [
        ("2026-03", 3, {"delivered": 3}),
        ("2026-04", None, None),
    ]
    header, *lines = report.to_csv(got, []).splitlines()
    rows = [dict(zip(header.split(","), line.split(","), strict=True)) for line in lines]
    assert rows[1]["told"] == "" and rows[1]["notices_delivered"] == ""
