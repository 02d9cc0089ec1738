"""Template versions under four eyes (SPEC §15): every save is a new numbered version. A change
to a template that reaches every winner (`reward_*`) or that a broadcast still uses waits as
`pending` until someone other than its author approves it; any other change goes live at once.
Broadcasts do not read the live template once approved: they send the text frozen then."""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import Conflict, Forbidden

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
