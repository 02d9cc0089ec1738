"""`engage report` (SPEC §12): tables printed and PNG charts written from the services' answers
(here, documents shaped like them)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from engage import report

FUNNEL: list[dict[str, Any]] = [
    {"step": "reached", "users": 1000, "of": None, "share": None},
    {"step": "entered", "users": 400, "of": "reached", "share": 0.4},
    {"step": "won", "users": 100, "of": "entered", "share": 0.25},
    {"step": "told", "users": None, "of": "won", "share": None},
    {"step": "fulfilled", "users": 80, "of": "won", "share": 0.8},
    {"step": "active_next_period", "users": 60, "of": "won", "share": 0.6},
]


def campaign_doc() -> dict[str, Any]:
    return {
        "campaign_id": "cmp_0123456789ab",
        "name": "New friends draw",
        "version": 2,
        "state": "active",
        "from": "2026-10-01",
        "to": "2026-11-30",
        "unit_prices": {"data_mb": 3},
        "holdout": {"percent": 10},
        "kinds": ["credit_fen"],
        "periods": [
            {
                "rule_id": "draw",
                "period": "2026-10",
                "entrants": 400,
                "winners": 100,
                "held_out": 11,
                "grants": {"granted": 100},
                "fulfilment": {"fulfilled": 80},
                "units": {"credit_fen": 50000},
                "money_fen": {"credit_fen": 50000},
                "money_fen_total": 50000,
            }
        ],
        "totals": {
            "units": {"credit_fen": 50000},
            "money_fen": {"credit_fen": 50000},
            "money_fen_total": 50000,
            "money_fen_fulfilled": 40000,
        },
        "budgets": [{"kind": "credit_fen", "total": 100000}],
        "budget_use": [
            {"day": "2026-11-02", "kind": "credit_fen", "units": 50000, "cumulative": 50000}
        ],
        "notices": None,
        "funnel": FUNNEL,
        "uplift": {
            "metric": "activity_points",
            "n_treated": 100,
            "n_held_out": 11,
            "mean_treated": 42.0,
            "mean_held_out": 35.5,
            "difference": 6.5,
            "ci_low": 1.2,
            "ci_high": 11.8,
            "significant": True,
        },
    }


def test_a_campaign_report_prints_its_tables_and_writes_three_charts(tmp_path: Path) -> None:
    printed = report.render_campaign(campaign_doc(), tmp_path)
    assert "Funnel" in printed.text and "active next period" in printed.text
    assert "¥500.00" in printed.text and "95% CI [+1.20, +11.80]" in printed.text
    assert [p.name for p in printed.charts] == [
        "cmp_0123456789ab-funnel.png", "cmp_0123456789ab-uplift.png",
        "cmp_0123456789ab-budget.png",
    ]  # fmt: skip
    for chart in printed.charts:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_notify_fills_in_who_was_told() -> None:
    funnel = report._with_told(FUNNEL, 90)
    assert funnel[3]["users"] == 90 and funnel[3]["share"] == 0.9
    assert funnel[4]["share"] == 0.8  # fulfilled is a share of the winners, not of the told


def test_notify_fills_in_who_was_told_per_rule_and_period(tmp_path: Path) -> None:
    doc = campaign_doc()
    counted = [{"rule_id": "draw", "period": "2026-10", "counts": {"delivered": 97},
                "reasons": [{"status": "delivered", "reason": None, "n": 97}],
                "told_users": 96}]  # fmt: skip
    doc["periods"] = report._with_period_notices(doc["periods"], counted)
    assert doc["periods"][0]["told"] == 96 and doc["periods"][0]["notices"] == {"delivered": 97}
    assert report._with_period_notices(doc["periods"], None) == doc["periods"]  # old notify
    printed = report.render_campaign(doc, tmp_path)
    line = next(x for x in printed.text.splitlines() if "draw 2026-10" in x)
    assert " 96 " in line


def test_a_month_report_charts_provinces_days_and_lifecycle(tmp_path: Path) -> None:
    item = {"province": None, "client": None, "active_users": 50, "new_users": 5,
            "messages": 900, "online_hours": 12.5, "sessions": 70, "checkins": 30,
            "returning_users": 40, "resurrecting_users": 3, "dormant_users": 7,
            "loyal_users": 20, "mau": 50, "dau_mean": 20.0, "dau_mau": 0.4}  # fmt: skip
    doc = {
        "month": "2026-10",
        "all": {"days_counted": 31, "items": [item]},
        "province": {"items": [item | {"province": "BJ"}, item | {"province": "SH"}]},
        "client": {"items": [item | {"client": "mobile"}]},
        "days": [{"day": "2026-10-01", "items": [item]}, {"day": "2026-10-02", "items": [item]}],
    }
    printed = report.render_month(doc, tmp_path)
    assert "By province" in printed.text and "BJ" in printed.text
    assert sorted(p.name for p in printed.charts) == [
        "month-2026-10-days.png", "month-2026-10-lifecycle.png", "month-2026-10-provinces.png"
    ]  # fmt: skip


def test_the_spend_chart_adds_up_granted_units_by_each_periods_first_day() -> None:
    """Cumulative by the periods' own days, whenever the grants were recorded; a week starts on
    its Monday, a month on its 1st; the whole-campaign period has no day."""
    periods = [
        {"period": "2026-10-02", "units": {"data_mb": 100}},
        {"period": "2026-10-01", "units": {"data_mb": 200, "credit_fen": 5}},
        {"period": "2026-W41", "units": {"credit_fen": 10}},
        {"period": "2026-11", "units": {"data_mb": 1}},
        {"period": "campaign", "units": {"data_mb": 999}},
    ]
    spend = report._spend_by_period(periods)
    assert spend["data_mb"] == [
        (date(2026, 10, 1), 200), (date(2026, 10, 2), 300), (date(2026, 11, 1), 301)
    ]  # fmt: skip
    assert spend["credit_fen"] == [(date(2026, 10, 1), 5), (date(2026, 10, 5), 15)]


def test_notify_holding_notices_of_no_period_leaves_a_period_without_its_own_unknown(
    tmp_path: Path,
) -> None:
    doc = campaign_doc()
    doc["periods"] = report._with_period_notices(doc["periods"], [], unattributed=2)
    assert doc["periods"][0]["told"] is None and doc["periods"][0]["notices"] is None
    printed = report.render_campaign(doc, tmp_path)  # renders an unknown, does not fail
    assert "draw 2026-10" in printed.text
