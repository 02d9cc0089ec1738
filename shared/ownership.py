"""Who owns what (SPEC §15): campaigns, broadcasts and templates belong to a team, and a key acts
only on its own team's objects unless it is `admin`.

Keys without a team and objects without one (those made before teams) form one more pool, the
"no team": such a key acts on exactly those objects, a team's key on none of them. Every refusal
is 403 `other_team`, naming the object and both teams in words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.auth import Principal, Role
from shared.errors import Forbidden

T = TypeVar("T")

OTHER_TEAM = "other_team"


def team_words(team: str | None) -> str:
    """A team as a sentence names it: `team north`, or `no team`."""
    return "no team" if team is None else f"team {team}"


def acts_for(principal: Principal, owner_team: str | None) -> bool:
    """Whether the key may see and change an object of `owner_team`: an admin any team's, any
    other key its own team's only (no team's when it has none)."""
    return Role.ADMIN in principal.roles or principal.team == owner_team


def check_team(principal: Principal, owner_team: str | None, what: str) -> None:
    """403 `other_team` unless the key acts for the team that owns `what` (e.g. "broadcast 12")."""
    if acts_for(principal, owner_team):
        return
    key = "has no team" if principal.team is None else f"works for team {principal.team}"
    raise Forbidden(
        f"{what} belongs to {team_words(owner_team)}; this key {key}",
        code=OTHER_TEAM,
        extra={"owner_team": owner_team, "key_team": principal.team},
    )


@dataclass(frozen=True, slots=True)
class TeamScope:
    """Which teams' objects a list shows the key: every team's for an admin, else its own."""

    every_team: bool
    team: str | None

    @classmethod
    def of(cls, principal: Principal) -> TeamScope:
        return cls(Role.ADMIN in principal.roles, principal.team)

    def admits(self, owner_team: str | None) -> bool:
        return self.every_team or owner_team == self.team

    def where(self, column: str = "team") -> tuple[str, dict[str, Any]]:
        """A SQL condition on `column` (trusted, never user input) and its bind parameters, for
        lists filtered and paged in the database."""
        if self.every_team:
            return "TRUE", {}
        return f"{column} IS NOT DISTINCT FROM :scope_team", {"scope_team": self.team}


def of_own_team(
    principal: Principal, items: Iterable[T], team_of: Callable[[T], str | None]
) -> list[T]:
    """The items the key may see: all of them for an admin, else its team's."""
    scope = TeamScope.of(principal)
    return [item for item in items if scope.admits(team_of(item))]
