"""Four eyes on campaign versions (SPEC §15, issue 18 item 2): every principal who wrote a
version's content, or submitted it, is barred from approving it and from reviewing what it
granted — however the content was re-saved."""

from __future__ import annotations

from typing import Any

import pytest

from services.rewards.domain import lifecycle
from services.rewards.domain.lifecycle import VersionState
from services.rewards.domain.review import VersionPeople, check_reviewer
from shared.errors import Forbidden

OWNER, ADMIN, APPROVER = "owner-key", "admin-key", "approver-key"
ORIGINAL: dict[str, Any] = {"name": "Invite", "rules": [{"rewards": [{"amount": 500}]}]}
MILLION: dict[str, Any] = {"name": "Invite", "rules": [{"rewards": [{"amount": 1_000_000}]}]}


def make_version(
    version: int,
    saver: str,
    definition: dict[str, Any],
    saved_from: list[VersionState] | None = None,
    status: str = lifecycle.DRAFT,
    submitted_by: str | None = None,
) -> VersionState:
    """A version as the store records it: authors from what it was saved from."""
    return VersionState(
        version, status, saver, submitted_by,
        lifecycle.authors_of_save(saver, saved_from or []), lifecycle.content_key(definition),
    )  # fmt: skip


def refused(version: VersionState, approver: str, versions: list[VersionState]) -> str:
    with pytest.raises(Forbidden) as err:
        lifecycle.check_approver(version, approver, versions)
    assert err.value.code == "self_approval"
    return str(err.value.detail)


# --- authors --------------------------------------------------------------------------------


def test_a_first_version_has_its_saver_as_only_author() -> None:
    assert lifecycle.authors_of_save(OWNER, []) == (OWNER,)


def test_an_edit_of_a_version_not_yet_approved_keeps_its_authors_then_the_saver() -> None:
    v1 = make_version(1, OWNER, ORIGINAL, status=lifecycle.SUBMITTED, submitted_by=OWNER)
    assert lifecycle.open_edits([v1]) == [v1]
    v2 = make_version(2, ADMIN, MILLION, lifecycle.open_edits([v1]))
    assert v2.authors == (OWNER, ADMIN) and v2.author == ADMIN
    v3 = make_version(3, OWNER, MILLION, lifecycle.open_edits([v1, v2]))
    assert v3.authors == (OWNER, ADMIN) and v3.author == OWNER  # each author once


@pytest.mark.parametrize(
    "status", [lifecycle.APPROVED, lifecycle.ACTIVE, lifecycle.PAUSED, lifecycle.SUPERSEDED]
)
def test_an_edit_after_an_approval_starts_a_new_chain_of_authors(status: str) -> None:
    live = make_version(1, ADMIN, ORIGINAL, status=status)
    assert lifecycle.open_edits([live]) == []
    assert make_version(2, OWNER, MILLION, lifecycle.open_edits([live])).authors == (OWNER,)


def test_a_fork_keeps_the_authors_of_its_source_whatever_its_status() -> None:
    v1 = make_version(1, OWNER, ORIGINAL, status=lifecycle.ACTIVE)
    v2 = make_version(2, ADMIN, MILLION)
    fork = make_version(3, OWNER, MILLION, [v2])
    assert fork.authors == (ADMIN, OWNER)
    assert make_version(4, APPROVER, ORIGINAL, [v1]).authors == (OWNER, APPROVER)


def test_a_changed_copy_of_an_open_edit_still_bars_its_writer() -> None:
    """The second reader's bypass: the owner forks the live version (the admin's draft is no
    longer the newest), pastes the admin's unapproved amount with a one-character change —
    the admin is still an author: every open edit's authors are inherited."""
    v1 = make_version(1, OWNER, ORIGINAL, status=lifecycle.ACTIVE)
    v2 = make_version(2, ADMIN, MILLION, lifecycle.open_edits([v1]))
    v3 = make_version(3, OWNER, ORIGINAL, [v1, *lifecycle.open_edits([v1, v2])])
    assert v3.authors == (OWNER, ADMIN)
    pasted = {**MILLION, "name": "Invite."}
    v4 = make_version(4, OWNER, pasted, lifecycle.open_edits([v1, v2, v3]))
    assert set(v4.authors) == {OWNER, ADMIN}
    refused(v4, ADMIN, [v1, v2, v3, v4])


def test_drafts_older_than_the_newest_approval_are_closed() -> None:
    v1 = make_version(1, ADMIN, MILLION)  # a draft nobody took further
    v2 = make_version(2, OWNER, ORIGINAL, status=lifecycle.ACTIVE)
    assert lifecycle.open_edits([v1, v2]) == []
    assert make_version(3, OWNER, ORIGINAL, lifecycle.open_edits([v1, v2])).authors == (OWNER,)


def test_a_version_saved_before_authors_were_recorded_counts_its_saver() -> None:
    old = VersionState(1, lifecycle.DRAFT, OWNER)  # authors () as before migration 0008
    assert old.editors == (OWNER,)
    assert lifecycle.authors_of_save(ADMIN, [old]) == (OWNER, ADMIN)


# --- approval -------------------------------------------------------------------------------


def test_an_admin_who_edited_cannot_approve_after_the_owner_re_saves_it() -> None:
    """The hostile test's finding: admin edits the amount after the owner's submission, the
    owner re-saves the same content, the admin approves."""
    v1 = make_version(1, OWNER, ORIGINAL, status=lifecycle.SUBMITTED, submitted_by=OWNER)
    v2 = make_version(2, ADMIN, MILLION, lifecycle.open_edits([v1]))
    v3 = make_version(3, OWNER, MILLION, lifecycle.open_edits([v1, v2]))
    submitted = VersionState(3, lifecycle.SUBMITTED, OWNER, OWNER, v3.authors, v3.content)
    versions = [v1, v2, submitted]
    detail = refused(submitted, ADMIN, versions)
    assert "wrote or submitted none" in detail and ADMIN not in detail and OWNER not in detail
    refused(submitted, OWNER, versions)
    lifecycle.check_approver(submitted, APPROVER, versions)


def test_a_fresh_save_of_someone_elses_content_is_still_theirs() -> None:
    """The admin's draft is closed (a later version was approved), the same JSON saved again by
    the owner: no open edit to inherit from, but the admin wrote an identical definition in
    another version, so may not approve it."""
    v1 = make_version(1, ADMIN, MILLION)
    v2 = make_version(2, OWNER, ORIGINAL, status=lifecycle.ACTIVE)
    v3 = make_version(3, OWNER, dict(MILLION), lifecycle.open_edits([v1, v2]))
    assert v3.authors == (OWNER,)
    submitted = VersionState(3, lifecycle.SUBMITTED, OWNER, OWNER, v3.authors, v3.content)
    versions = [v1, v2, submitted]
    refused(submitted, ADMIN, versions)
    lifecycle.check_approver(submitted, APPROVER, versions)


def test_identical_content_ignores_key_order_and_nothing_else() -> None:
    reordered = {"rules": [{"rewards": [{"amount": 500}]}], "name": "Invite"}
    assert lifecycle.content_key(reordered) == lifecycle.content_key(ORIGINAL)
    assert lifecycle.content_key(MILLION) != lifecycle.content_key(ORIGINAL)


def test_an_author_of_different_content_may_approve() -> None:
    v1 = make_version(1, ADMIN, ORIGINAL, status=lifecycle.SUPERSEDED)
    v2 = make_version(2, OWNER, MILLION, lifecycle.open_edits([v1]))
    submitted = VersionState(2, lifecycle.SUBMITTED, OWNER, OWNER, v2.authors, v2.content)
    lifecycle.check_approver(submitted, ADMIN, [v1, submitted])


def test_the_submitter_cannot_approve() -> None:
    v1 = make_version(1, OWNER, ORIGINAL, status=lifecycle.SUBMITTED, submitted_by=ADMIN)
    refused(v1, ADMIN, [v1])
    assert lifecycle.barred_from_approving(v1, [v1]) == {OWNER, ADMIN}


# --- a new draft withdraws a submitted version ---------------------------------------------


def test_saving_a_draft_returns_every_submitted_version_to_draft() -> None:
    versions = [
        make_version(1, OWNER, ORIGINAL, status=lifecycle.ACTIVE),
        make_version(2, OWNER, MILLION, status=lifecycle.SUBMITTED, submitted_by=OWNER),
        make_version(3, OWNER, MILLION, status=lifecycle.APPROVED),
        make_version(4, OWNER, ORIGINAL),
    ]
    assert lifecycle.withdrawn_by_save(versions) == [2]
    assert lifecycle.withdrawn_by_save(versions[:1]) == []


# --- review hold and exclusion lists --------------------------------------------------------


def test_any_author_of_the_version_cannot_review_what_it_granted() -> None:
    versions = [VersionPeople(2, OWNER, OWNER, (ADMIN, OWNER))]
    with pytest.raises(Forbidden) as err:
        check_reviewer(versions, ADMIN)
    assert err.value.code == "self_review"
    assert "neither authored nor submitted" in str(err.value.detail)
    check_reviewer(versions, APPROVER)


def test_a_reviewer_who_wrote_the_same_content_elsewhere_is_an_author() -> None:
    v1 = make_version(1, ADMIN, MILLION, status=lifecycle.SUPERSEDED)
    v2 = make_version(2, OWNER, MILLION, status=lifecycle.ACTIVE)
    writers = lifecycle.writers(v2, [v1, v2])
    assert writers == {OWNER, ADMIN}
    people = [VersionPeople(2, OWNER, APPROVER, tuple(sorted(writers)))]
    for who in (ADMIN, OWNER, APPROVER):
        with pytest.raises(Forbidden):
            check_reviewer(people, who)
    check_reviewer(people, "someone-else")
