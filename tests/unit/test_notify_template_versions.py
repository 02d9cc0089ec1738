"""Four eyes on template changes (SPEC §15), as pure decisions."""

from __future__ import annotations

from datetime import date

import pytest

from services.notify.domain.broadcast import broadcast_of, render_texts, source_of
from services.notify.domain.template_versions import (
    LIVE,
    PENDING,
    REJECTED,
    check_decision,
    check_readable,
    check_usable,
    owning_team,
    review_reason,
)
from shared.auth import Principal, Role
from shared.errors import Conflict, Forbidden


def test_a_reward_template_change_always_needs_a_second_principal() -> None:
    assert review_reason("reward_granted", []) == "reward template: reaches every winner"
    assert review_reason("reward_digest", []) is not None


def test_a_template_in_use_by_a_broadcast_needs_a_second_principal() -> None:
    assert review_reason("rt_promo", [7, 3]) == "in use by broadcast 3, 7"


def test_any_other_template_change_goes_live_at_once() -> None:
    assert review_reason("rt_promo", []) is None
    assert review_reason("rewards_digest_like", []) is None  # "rewards" is not "reward_"


def test_its_author_cannot_approve_or_reject_a_version() -> None:
    with pytest.raises(Forbidden) as refused:
        check_decision("t/im/en v2", PENDING, "key_a", "key_a")
    assert refused.value.code == "self_approval"
    check_decision("t/im/en v2", PENDING, "key_a", "key_b")


@pytest.mark.parametrize("status", [LIVE, REJECTED, "superseded"])
def test_only_a_pending_version_is_decided(status: str) -> None:
    with pytest.raises(Conflict):
        check_decision("t/im/en v2", status, "key_a", "key_b")


def test_a_broadcast_message_names_its_broadcast() -> None:
    assert broadcast_of(source_of(42)) == 42
    assert broadcast_of("grant:42") is None
    assert broadcast_of("broadcast:x") is None


def test_rendered_texts_carry_the_template_version_they_come_from() -> None:
    texts = render_texts({("im", "en"): (3, "Hi {name}")}, {"name": "Li"}, date(2026, 11, 30))
    assert [(t.channel, t.locale, t.text, t.template_version) for t in texts] == [
        ("im", "en", "Hi Li", 3)
    ]


def _key(team: str | None, role: Role = Role.CAMPAIGN_OWNER) -> Principal:
    return Principal("k1", "test", frozenset({role}), 1.0, team=team)


def test_a_new_template_belongs_to_its_first_authors_team() -> None:
    assert owning_team("north_promo", "north") == "north"
    assert owning_team("rt_promo", None) is None


def test_a_reward_template_belongs_to_no_team_whoever_writes_it_first() -> None:
    assert owning_team("reward_granted", "north") is None
    assert owning_team("reward_new", "south") is None


def test_a_global_template_is_read_and_used_by_every_team() -> None:
    check_readable(_key("north"), "reward_granted", None)
    check_usable(_key("south"), "rt_promo", None)


def test_a_teams_template_is_read_and_used_by_that_team_or_admin_only() -> None:
    check_readable(_key("north"), "north_promo", "north")
    check_usable(_key(None, Role.ADMIN), "north_promo", "north")
    for team in ("south", None):
        with pytest.raises(Forbidden) as refused:
            check_usable(_key(team), "north_promo", "north")
        assert refused.value.code == "other_team"
