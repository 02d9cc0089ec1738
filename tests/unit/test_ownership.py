"""Ownership (SPEC §15): a key acts on its own team's objects only, unless it is admin."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.auth import Principal, Role
from shared.errors import Forbidden
from shared.ownership import OTHER_TEAM, TeamScope, acts_for, check_team, of_own_team


def make_key(team: str | None, *roles: Role) -> Principal:
    return Principal("k1", "test", frozenset(roles or (Role.CAMPAIGN_OWNER,)), 1.0, team=team)


def test_a_key_acts_on_its_own_teams_objects() -> None:
    check_team(make_key("north"), "north", "broadcast 12")
    assert acts_for(make_key("north"), "north")


def test_another_teams_object_is_refused_naming_both_teams() -> None:
    with pytest.raises(Forbidden) as refused:
        check_team(make_key("south"), "north", "broadcast 12")
    assert refused.value.status == 403
    assert refused.value.code == OTHER_TEAM
    assert refused.value.detail == (
        "broadcast 12 belongs to team north; this key works for team south"
    )
    assert refused.value.extra == {"owner_team": "north", "key_team": "south"}


def test_a_key_without_a_team_acts_only_on_objects_without_one() -> None:
    check_team(make_key(None), None, "template reward_granted")
    with pytest.raises(Forbidden) as refused:
        check_team(make_key(None), "north", "broadcast 12")
    assert refused.value.detail == "broadcast 12 belongs to team north; this key has no team"


def test_a_teams_key_cannot_act_on_objects_without_a_team() -> None:
    with pytest.raises(Forbidden) as refused:
        check_team(make_key("north"), None, "template reward_granted")
    assert refused.value.detail == (
        "template reward_granted belongs to no team; this key works for team north"
    )


@pytest.mark.parametrize("owner_team", ["north", "south", None])
def test_an_admin_acts_on_every_teams_objects(owner_team: str | None) -> None:
    check_team(make_key("south", Role.ADMIN), owner_team, "campaign cmp_1")
    check_team(make_key(None, Role.ADMIN), owner_team, "campaign cmp_1")


def test_an_approver_of_another_team_is_refused_like_anyone() -> None:
    with pytest.raises(Forbidden):
        check_team(make_key("south", Role.APPROVER, Role.CAMPAIGN_OWNER), "north", "broadcast 1")


@dataclass
class Thing:
    name: str
    team: str | None


THINGS = [Thing("a", "north"), Thing("b", "south"), Thing("c", None)]


def test_a_list_shows_only_the_keys_teams_objects() -> None:
    assert [t.name for t in of_own_team(make_key("north"), THINGS, lambda t: t.team)] == ["a"]
    assert [t.name for t in of_own_team(make_key(None), THINGS, lambda t: t.team)] == ["c"]


def test_an_admins_list_shows_every_team() -> None:
    shown = of_own_team(make_key(None, Role.ADMIN), THINGS, lambda t: t.team)
    assert [t.name for t in shown] == ["a", "b", "c"]


def test_the_scope_filters_in_sql_by_team_or_not_at_all() -> None:
    assert TeamScope.of(make_key("north")).where("c.team") == (
        "c.team IS NOT DISTINCT FROM :scope_team",
        {"scope_team": "north"},
    )
    assert TeamScope.of(make_key(None)).where() == (
        "team IS NOT DISTINCT FROM :scope_team",
        {"scope_team": None},
    )
    assert TeamScope.of(make_key("north", Role.ADMIN)).where() == ("TRUE", {})
