"""Campaign lifecycle (SPEC §5): draft → submitted → approved → active ⇄ paused → ended.

Versions carry the status; the campaign's state is its live version's (active, paused, ended)
or, before the first activation, its newest version's. Every saved draft is a new numbered
version, never an overwrite (SPEC §10 Versions); a draft may be forked from any version.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import Conflict, Forbidden

DRAFT, SUBMITTED, APPROVED = "draft", "submitted", "approved"
ACTIVE, PAUSED, ENDED, SUPERSEDED = "active", "paused", "ended", "superseded"


@dataclass(frozen=True, slots=True)
class VersionState:
    version: int
    status: str
    author: str
    submitted_by: str | None = None


def check_editable(campaign_state: str) -> None:
    """Whether a new draft version may be saved (SPEC §10: every save is a new version)."""
    if campaign_state == ENDED:
        raise Conflict("the campaign has ended; it cannot be edited", code="campaign_ended")


def check_transition(current: str, action: str) -> str:
    """The version status after `action`, or 409 naming what is allowed."""
    allowed = {
        "submit": ({DRAFT}, SUBMITTED),
        "approve": ({SUBMITTED}, APPROVED),
        "reject": ({SUBMITTED}, DRAFT),
        "activate": ({APPROVED}, ACTIVE),
        "pause": ({ACTIVE}, PAUSED),
        "resume": ({PAUSED}, ACTIVE),
        "end": ({ACTIVE, PAUSED}, ENDED),
    }
    sources, target = allowed[action]
    if current not in sources:
        raise Conflict(
            f"cannot {action} a version that is {current} (needs {' or '.join(sorted(sources))})",
            code="invalid_transition",
        )
    return target


def check_approver(version: VersionState, approver: str) -> None:
    """Approval must come from a different principal than the author and the submitter."""
    if approver in {version.author, version.submitted_by}:
        raise Forbidden(
            "a version cannot be approved by its author or submitter", code="self_approval"
        )
