"""Campaign lifecycle (SPEC §5): draft → submitted → approved → active ⇄ paused → ended.

Versions carry the status; the campaign's state is its live version's (active, paused, ended)
or, before the first activation, its newest version's. Every saved draft is a new numbered
version, never an overwrite (SPEC §10 Versions); a draft may be forked from any version.

Four eyes (SPEC §15): everyone who edited or submitted a version is barred from approving it.
With immutable versions "edited" means more than "saved this row", so a version records its
`authors` — the principal who saved it and every author of the content it was saved from
(`authors_of_save`) — and approval is also refused to an author of any version of the campaign
with an identical definition (`barred_from_approving`): re-saving someone else's open edit, changed
or not, or saving the same JSON afresh, does not make it approvable by them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shared.errors import Conflict, Forbidden

DRAFT, SUBMITTED, APPROVED = "draft", "submitted", "approved"
ACTIVE, PAUSED, ENDED, SUPERSEDED = "active", "paused", "ended", "superseded"
# Not yet approved: a save while such a version is open may continue its content.
UNAPPROVED = frozenset({DRAFT, SUBMITTED})
SELF_APPROVAL = (
    "four eyes (SPEC §15): a version is approved only by a principal who wrote or submitted none "
    "of it — not its submitter, not an author of it or of the edits it was saved from, and not "
    "an author of another version of the campaign with the same definition"
)


@dataclass(frozen=True, slots=True)
class VersionState:
    version: int
    status: str
    author: str  # who saved this version
    submitted_by: str | None = None
    authors: tuple[str, ...] = ()  # every author (see `authors_of_save`); () = just `author`
    content: str = ""  # `content_key` of its definition; "" = unknown

    @property
    def editors(self) -> tuple[str, ...]:
        """Everyone who wrote this version's content, the saver included."""
        return self.authors if self.author in self.authors else (*self.authors, self.author)


def content_key(definition: Mapping[str, Any]) -> str:
    """A digest equal for two definitions exactly when they are the same JSON (key order aside)."""
    canonical = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def open_edits(versions: Sequence[VersionState]) -> list[VersionState]:
    """The versions a save may continue: every version not yet approved (draft or submitted)
    newer than the newest one that was approved (approved, live or done) — the campaign's open
    edits. Any of them may be what the saver loaded and changed (an editor can open any draft),
    so a new version inherits the authors of all of them: after the owner forks the live version
    and pastes an admin's unapproved draft into it, the admin is still among its authors. Once a
    later version is approved, older drafts are closed: copying one of them by hand is the
    copier's own writing (content identity in `barred_from_approving` still covers the same
    definition saved again)."""
    approved = [v.version for v in versions if v.status not in UNAPPROVED]
    newest_approved = max(approved, default=0)
    return [v for v in versions if v.status in UNAPPROVED and v.version > newest_approved]


def authors_of_save(saver: str, saved_from: Iterable[VersionState]) -> tuple[str, ...]:
    """A new version's authors: every author of the versions it was saved from — a fork's
    source (whatever its status) and the open edits (`open_edits`) — then the saver, each
    once, in the order they first wrote."""
    out: list[str] = []
    for v in saved_from:
        out += [a for a in v.editors if a not in out]
    return (*out, saver) if saver not in out else tuple(out)


def withdrawn_by_save(versions: Iterable[VersionState]) -> list[int]:
    """Versions that go back to draft when a new draft of the campaign is saved: every submitted
    one, so an approver never approves a version while the campaign is being edited on."""
    return [v.version for v in versions if v.status == SUBMITTED]


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


def writers(version: VersionState, versions: Iterable[VersionState] = ()) -> frozenset[str]:
    """Everyone who wrote `version`'s content: its authors and the authors of every version in
    `versions` with the same definition."""
    found = set(version.editors)
    for other in versions:
        if version.content and other.content == version.content:
            found.update(other.editors)
    return frozenset(found)


def barred_from_approving(
    version: VersionState, versions: Iterable[VersionState] = ()
) -> frozenset[str]:
    """Who may not approve `version` (SPEC §15): its writers (`writers`, over the campaign's
    `versions`) and its submitter."""
    submitter = {version.submitted_by} if version.submitted_by else set()
    return writers(version, versions) | submitter


def check_approver(
    version: VersionState, approver: str, versions: Iterable[VersionState] = ()
) -> None:
    """403 `self_approval` when `approver` wrote or submitted any of `version` (the refusal
    names the rule, never who else wrote it)."""
    if approver in barred_from_approving(version, versions):
        raise Forbidden(SELF_APPROVAL, code="self_approval")
