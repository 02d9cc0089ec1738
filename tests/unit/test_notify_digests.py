"""Every winner is told, every promise is true (SPEC §11) — pure: digests composed from a user's
due notices in priority order, what the cap does to each kind of message, and the fulfil-by
promise worded for the day a notice is sent."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson

from services.notify.domain.delivery import next_local_day, over_cap
from services.notify.domain.digests import (
    MAX_DIGEST_ITEMS,
    Message,
    Pending,
    compose,
    digest_params,
)
from services.notify.domain.fulfilment import REWARD_TEXTS, fulfilment, render_notice
from services.notify.domain.notices import (
    CREDIT_FIRST,
    OTHER,
    REWARD,
    REWARD_TEMPLATE,
    NewNotification,
    grant_notice,
    schedule,
)
from services.notify.domain.policy import Policy
from services.notify.domain.templates import sms_segments
from shared.records import GrantRecord

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 22, 15, 0, tzinfo=TZ)
TODAY = NOW.date()


def make_pending(id: int, **overrides: object) -> Pending:
    fields: dict[str, object] = {
        "id": id, "template": REWARD_TEMPLATE, "category": "reward", "channel": "im",
        "locale": "zh-CN", "priority": REWARD, "digest_id": None, "cap_day": None, **overrides,
    }  # fmt: skip
    return Pending(**fields)  # type: ignore[arg-type]


def test_reward_notices_waiting_for_a_user_become_one_digest() -> None:
    (message,) = compose([make_pending(3), make_pending(1), make_pending(2)])
    assert message == Message(1, (1, 2, 3), "reward", digest=True, holds_slot=False)


def test_a_single_waiting_reward_notice_goes_out_as_it_always_did() -> None:
    assert compose([make_pending(7)]) == [Message(7, (7,), "reward", False, False)]


def test_credit_rewards_lead_and_take_slots_before_other_rewards_and_marketing() -> None:
    many = [make_pending(i) for i in range(1, MAX_DIGEST_ITEMS + 2)]
    credit = make_pending(100, priority=CREDIT_FIRST)
    promo = make_pending(0, template="promo", category="marketing", priority=OTHER)
    first, second, third = compose([promo, *many, credit])
    assert first.members[0] == 100 and len(first.members) == MAX_DIGEST_ITEMS
    assert second.members == (MAX_DIGEST_ITEMS, MAX_DIGEST_ITEMS + 1) and second.digest
    assert third == Message(0, (0,), "marketing", False, False)


def test_a_retried_digest_keeps_its_id_members_and_slot() -> None:
    day = date(2026, 11, 22)
    retried = [make_pending(i, digest_id=4, cap_day=day) for i in (4, 5)]
    first, fresh = compose([make_pending(9), *retried])
    assert first == Message(4, (4, 5), "reward", digest=True, holds_slot=True)
    assert fresh == Message(9, (9,), "reward", False, False)


def test_the_cap_suppresses_marketing_and_defers_everything_else_to_the_next_local_day() -> None:
    assert over_cap(Policy("marketing", marketing=True), NOW, TZ).status == "suppressed"
    d = over_cap(Policy("reward", marketing=False), NOW, TZ)
    assert (d.status, d.reason, d.not_before) == (
        "deferred", "daily_cap", datetime(2026, 11, 23, 8, 0, tzinfo=TZ),
    )  # fmt: skip
    always = Policy("reward", window_start=time(0), window_end=time(0), marketing=False)
    assert next_local_day(always, NOW, TZ) == datetime(2026, 11, 23, tzinfo=TZ)


def test_a_digest_lists_each_reward_with_a_true_promise() -> None:
    items = [
        {"campaign": "新春", "rewards": "2元话费", "fulfil_by": "2026-12-10"},
        {"campaign": "签到", "rewards": "20条短信", "fulfil_by": "2026-11-01"},
        {"campaign": "邀请", "rewards": "10积分", "fulfil_by": "2026-11-22"},
    ]
    params = digest_params(items, "zh-CN", TODAY)
    assert params == {
        "count": 3,
        "rewards": "「新春」2元话费，将于2026-12-10前到账；「签到」20条短信，将尽快到账；"
        "「邀请」10积分，将于2026-11-22前到账",
    }
    en = digest_params(items[:1], "en", TODAY)
    assert en["rewards"] == "新春: 2元话费, delivered by 2026-12-10"
    body = render_notice("【飞信】恭喜！您获得{count}项奖励：{rewards}。回TD退订", params, "sms",
                         "zh-CN", TODAY)  # fmt: skip
    assert sms_segments(body).count == 2  # counted as any SMS is: UCS-2, 67 a part


def test_a_passed_fulfil_by_day_is_never_promised() -> None:
    params = {"campaign": "新春", "rewards": "2元话费", "fulfil_by": "2026-11-21"}
    seeded = REWARD_TEXTS[("im", "zh-CN")]
    assert render_notice(seeded, params, "im", "zh-CN", TODAY) == (
        "恭喜！您在「新春」活动中获得2元话费，将尽快到账。"
    )
    assert render_notice(seeded, params, "im", "zh-CN", date(2026, 11, 21)) == (
        "恭喜！您在「新春」活动中获得2元话费，将于2026-11-21前到账。"
    )
    # A saved template still printing {fulfil_by} gives way to the wording that is true.
    custom = "您的{rewards}将于{fulfil_by}前到账（{campaign}）"
    assert render_notice(custom, params, "im", "zh-CN", TODAY) == (
        "恭喜！您在「新春」活动中获得2元话费，将尽快到账。"
    )
    assert "2026-11-21" not in render_notice(custom, params, "sms", "en", TODAY)
    assert fulfilment("2026-11-21", "en", TODAY) == "delivered as soon as possible"


def test_grant_notices_carry_their_priority_and_wait_to_be_gathered() -> None:
    doc = {
        "event": "recorded", "grant_id": 5, "campaign_id": "cmp_000000000001", "version": 1,
        "rule_id": "r", "role": "user", "user_id": "u1", "period": "campaign",
        "status": "granted", "items": [{"kind": "sms", "amount": 20}], "fulfil_by": "2026-12-10",
    }  # fmt: skip
    plain = grant_notice(GrantRecord.model_validate_json(orjson.dumps(doc)))
    credit_doc = {**doc, "items": [{"kind": "credit_fen", "amount": 100}]}
    credit = grant_notice(GrantRecord.model_validate_json(orjson.dumps(credit_doc)))
    assert plain is not None and credit is not None
    assert (plain.priority, credit.priority) == (REWARD, CREDIT_FIRST)
    other = NewNotification("request:1", "u1", "promo", "marketing", "im", "zh-CN", {})
    gathered = schedule([plain, other], {}, NOW, gather=timedelta(seconds=2))
    assert [s.not_before for s in gathered] == [NOW + timedelta(seconds=2), NOW]
