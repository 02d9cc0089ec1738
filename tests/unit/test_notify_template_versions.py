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
    review_reason,
)
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
