"""Template versions under four eyes (SPEC §15): every save is a new numbered version. A change
to a template that reaches every winner (`reward_*`) or that a broadcast still uses waits as
`pending` until someone other than its author approves it; any other change goes live at once.
Broadcasts do not read the live template once approved: they send the text frozen then.

Owning teams: a template name (all its channels and locales) belongs to the team of its first
author. `reward_*` templates belong to no team: every campaign's winners get them, so they are
global — every key reads them, only admin keys and keys without a team change or decide them
(and a change still needs a second principal). Templates without a team are readable by every
key and usable by every team's broadcasts; a team's templates by that team only."""

from __future__ import annotations

from collections.abc import Sequence

from shared.auth import Principal
from shared.errors import Conflict, Forbidden
from shared.ownership import check_team

PENDING, LIVE, SUPERSEDED, REJECTED = "pending", "live", "superseded", "rejected"
REWARD_PREFIX = "reward_"


def review_reason(name: str, used_by: Sequence[int]) -> str | None:
    """Why a change to this template needs a second principal, or None when it goes live at
    once: reward templates reach every winner; a template in use reaches a broadcast's
    recipients."""
    if name.startswith(REWARD_PREFIX):
        return "reward template: reaches every winner"
    if used_by:
        ids = ", ".join(str(b) for b in sorted(used_by)[:10])
        return f"in use by broadcast {ids}"
    return None


def check_decision(subject: str, status: str, author: str, decider: str) -> None:
    """Only a pending version is approved or rejected, and not by its author (four eyes)."""
    if status != PENDING:
        raise Conflict(f"template version {subject} is {status}", code="invalid_transition")
    if decider == author:
        raise Forbidden(
            "a template version cannot be approved or rejected by its author",
            code="self_approval",
        )


def owning_team(name: str, author_team: str | None) -> str | None:
    """The team a new template name belongs to: its first author's, except `reward_*`, which
    are global (no team)."""
    return None if name.startswith(REWARD_PREFIX) else author_team


def check_readable(reader: Principal, name: str, team: str | None) -> None:
    """A global template (no team) is read by every key; a team's by that team (or admin)."""
    if team is not None:
        check_team(reader, team, f"template {name}")


def check_usable(creator: Principal, name: str, team: str | None) -> None:
    """A broadcast sends a global template or one of its own team's (403 `other_team`)."""
    check_readable(creator, name, team)
