"""Lifecycle stages and KPI contributions (SPEC §12): the pure rules."""

from __future__ import annotations

from datetime import date

import pytest

from services.scoring.domain.kpis import (
    MONTH_KPIS,
    Counts,
    KpiDeltas,
    add_contribution,
    day_contribution,
    month_contribution,
    province_key,
    shown_province,
)
from services.scoring.domain.lifecycle import (
    MonthActivity,
    is_loyal,
    months_to_recompute,
    stage_of,
)
from services.scoring.domain.stats import KpiRow, days_counted, slices

NOV, DEC, JAN = date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)


def month(
    first_seen: date | None = NOV,
    at: date = DEC,
    active: bool = False,
    last: bool = False,
    before_last: bool = False,
) -> MonthActivity:
    return MonthActivity(first_seen, at, active, last, before_last)


def test_first_seen_month_is_new_whether_active_or_not() -> None:
    assert stage_of(month(first_seen=DEC, active=True)) == "new"
    assert stage_of(month(first_seen=DEC, active=False)) == "new"


def test_active_this_month_and_last_is_returning() -> None:
    assert stage_of(month(active=True, last=True)) == "returning"


def test_active_this_month_not_last_is_resurrecting() -> None:
    assert stage_of(month(first_seen=date(2026, 6, 1), active=True, last=False)) == "resurrecting"


def test_seen_before_without_activity_then_active_is_resurrecting() -> None:
    # Every active month has exactly one of new / returning / resurrecting.
    assert stage_of(month(first_seen=NOV, active=True, last=False)) == "resurrecting"


def test_active_last_month_not_this_is_dormant() -> None:
    assert stage_of(month(active=False, last=True)) == "dormant"


def test_inactive_this_month_and_last_has_no_stage() -> None:
    assert stage_of(month(active=False, last=False, before_last=True)) is None


def test_a_month_before_first_seen_or_of_an_unknown_user_has_no_stage() -> None:
    assert stage_of(month(first_seen=JAN, at=DEC)) is None
    assert stage_of(month(first_seen=None, active=True)) is None


def test_loyal_needs_three_consecutive_active_months_ending_this_one() -> None:
    assert is_loyal(month(active=True, last=True, before_last=True))
    assert not is_loyal(month(active=True, last=True, before_last=False))
    assert not is_loyal(month(active=False, last=True, before_last=True))


def test_month_boundaries_are_calendar_months_across_the_year() -> None:
    assert stage_of(month(first_seen=DEC, at=JAN, active=True, last=True)) == "returning"
    assert stage_of(month(first_seen=DEC, at=JAN, active=False, last=True)) == "dormant"


def test_a_month_that_became_active_restages_the_two_after_it() -> None:
    assert months_to_recompute(NOV, active_flipped=True) == 3
    assert months_to_recompute(NOV, active_flipped=False) == 1


def test_day_contribution_counts_each_user_once_and_each_client_apart() -> None:
    c = Counts(messages=3, messages_mobile=1, messages_sms=2, online_seconds_pc=60,
               online_seconds_mobile=30, sessions_pc=1, sessions_sms=1, checkins=1)  # fmt: skip
    got = day_contribution(c, first_seen_today=True)
    assert got["all"] == [1, 1, 5, 90, 2, 1]
    assert got["pc"] == [1, 0, 2, 60, 1, 0]
    assert got["mobile"] == [1, 0, 1, 30, 0, 0]
    assert got["sms"] == [1, 0, 2, 0, 1, 0]


def test_sms_only_user_is_not_active_but_counts_as_an_sms_sender() -> None:
    got = day_contribution(Counts(messages_sms=4), first_seen_today=False)
    assert got["all"][0] == 0 and got["sms"][0] == 1


def test_month_contribution_carries_the_stage_and_loyal() -> None:
    returning = month_contribution(Counts(messages=1), "returning", True)["all"]
    got = dict(zip(MONTH_KPIS, returning, strict=True))
    assert got["returning_users"] == got["loyal_users"] == got["active_users"] == 1
    assert got["new_users"] == got["dormant_users"] == 0
    quiet = month_contribution(Counts(), "dormant", False)["all"]
    dormant = dict(zip(MONTH_KPIS, quiet, strict=True))
    assert dormant["dormant_users"] == 1 and dormant["active_users"] == 0


def test_moving_a_contribution_between_provinces_nets_to_zero_overall() -> None:
    deltas: KpiDeltas = {}
    contribution = day_contribution(Counts(messages=2), first_seen_today=False)
    add_contribution(deltas, NOV, "unknown", contribution, -1)
    add_contribution(deltas, NOV, "GD", contribution, 1)
    assert deltas[(NOV, "GD", "all")][0] == 1 and deltas[(NOV, "unknown", "all")][0] == -1


@pytest.mark.parametrize(
    ("top", "province", "key"),
    [(None, None, "unknown"), ("g1", "GD", "GD"), ("g1", None, "?g1")],
)
def test_province_key_waits_for_the_groups_creation(
    top: str | None, province: str | None, key: str
) -> None:
    assert province_key(top, province) == key
    assert shown_province(key) == ("unknown" if key.startswith("?") else key)


def test_slices_fold_pending_groups_into_unknown_and_keep_all_rows_without_client() -> None:
    rows = [
        KpiRow("GD", "all", (1, 0)),
        KpiRow("?g9", "all", (2, 1)),
        KpiRow("unknown", "all", (1, 1)),
        KpiRow("GD", "pc", (5, 0)),
    ]
    assert slices(rows, ("a", "b"), set()) == {(None, None): {"a": 4, "b": 2}}
    by_province = slices(rows, ("a", "b"), {"province"})
    assert by_province[("unknown", None)] == {"a": 3, "b": 2}
    assert slices(rows, ("a", "b"), {"client"})[(None, "pc")] == {"a": 5, "b": 0}


def test_mean_dau_of_the_current_month_counts_days_up_to_today() -> None:
    assert days_counted(NOV, date(2026, 11, 10)) == 10
    assert days_counted(NOV, date(2027, 2, 1)) == 30
