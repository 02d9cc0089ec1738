"""Notify domain (SPEC §6): templates, SMS segmentation, windows, TTL, caps by local day,
backoff, delivery fallbacks and retries, broadcasts, notices, opt-out replies — pure, no I/O."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.notify.domain.broadcast import (
    APPROVED,
    CANCELLED,
    PENDING,
    BroadcastDraft,
    check_approval,
    check_cancel,
    fan_out,
    paced_schedule,
)
from services.notify.domain.delivery import (
    CAP_USED_UP,
    channels_for,
    gives_slot_back,
    next_attempt,
)
from services.notify.domain.messages import describe_rewards
from services.notify.domain.notices import (
    NewNotification,
    grant_notice,
    resend_notice,
    schedule,
)
from services.notify.domain.opt_outs import is_unsubscribe
from services.notify.domain.policy import Decision, Policy, backoff, decide, local_day, policy_for
from services.notify.domain.templates import (
    TemplateError,
    in_locale,
    locales_to_try,
    render,
    sms_length,
    sms_segments,
    validate,
)
from shared.errors import Conflict, Forbidden
from shared.records import GrantRecord

TZ = ZoneInfo("Asia/Shanghai")


def at(hour: int, minute: int = 0, second: int = 0, day: int = 22) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=TZ)


def test_template_must_use_exactly_its_declared_placeholders() -> None:
    validate("恭喜{name}获得{reward}", ["name", "reward"])
    with pytest.raises(TemplateError, match=r"unknown placeholder '\{prize\}'") as e:
        validate("恭喜{name}获得{prize}", ["name", "reward"])
    assert e.value.field == "text"
    with pytest.raises(TemplateError, match="'reward' is declared but not used") as e:
        validate("恭喜{name}", ["name", "reward"])
    assert e.value.field == "placeholders"


@pytest.mark.parametrize("text", ["oops {", "{0}", "{a.b}", "{a!r}", "{a:>5}", "   "])
def test_malformed_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        validate(text, ["a"])


def test_render_needs_every_placeholder_and_keeps_literal_braces() -> None:
    assert render("{{x}} {a}", {"a": 1}) == "{x} 1"
    with pytest.raises(TemplateError, match="missing placeholder 'a'"):
        render("{a}", {})


def test_chinese_text_is_ucs2_with_70_then_67_unit_segments() -> None:
    assert sms_segments("你" * 70).count == 1
    seg = sms_segments("你" * 71)
    assert (seg.encoding, seg.units, seg.count) == ("UCS-2", 71, 2)
    assert sms_segments("你" * 134).count == 2 and sms_segments("你" * 135).count == 3
    assert sms_segments("😀").units == 2  # outside the BMP: a surrogate pair


def test_latin_text_is_gsm7_and_extension_characters_count_twice() -> None:
    assert sms_segments("a" * 160).count == 1 and sms_segments("a" * 161).count == 2
    seg = sms_segments("€" * 80)
    assert (seg.encoding, seg.units, seg.count) == ("GSM-7", 160, 1)


def test_outside_the_window_a_message_waits_for_the_next_one() -> None:
    p = Policy("reward")
    expires = at(23) + timedelta(days=2)
    assert decide(p, at(12), expires, TZ, False).action == "send"
    late = decide(p, at(21, 30), expires, TZ, False)
    assert (late.action, late.not_before) == ("defer", datetime(2026, 11, 23, 8, tzinfo=TZ))
    early = decide(p, at(7, 59), expires, TZ, False)
    assert early.not_before == at(8)


def test_window_across_midnight_and_always_open() -> None:
    night = Policy("service", window_start=time(22), window_end=time(6))
    assert night.in_window(at(23), TZ) and night.in_window(at(5), TZ)
    assert not night.in_window(at(12), TZ)
    always = Policy("service", window_start=time(0), window_end=time(0))
    assert always.in_window(at(3), TZ)


def test_ttl_expires_messages_even_while_they_wait() -> None:
    p = Policy("reward")
    assert decide(p, at(12), at(12), TZ, False).action == "expire"
    # the window opens only after the message would have expired
    d = decide(p, at(22), at(23, 30), TZ, False)
    assert (d.action, d.reason) == ("expire", "ttl_before_window")


def test_opt_out_suppresses_marketing_only() -> None:
    expires = at(23)
    assert decide(Policy("marketing"), at(12), expires, TZ, True).action == "suppress"
    assert decide(Policy("reward", marketing=False), at(12), expires, TZ, True).action == "send"


def test_cap_day_is_the_users_local_day_across_midnight() -> None:
    # 15:59 and 16:00 UTC are 23:59 and 00:00 in Shanghai: two different cap days
    assert local_day(datetime(2026, 11, 22, 15, 59, tzinfo=UTC), TZ) == date(2026, 11, 22)
    assert local_day(datetime(2026, 11, 22, 16, 0, tzinfo=UTC), TZ) == date(2026, 11, 23)


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    rnd = random.Random(1)
    for attempt in range(1, 12):
        waits = [backoff(attempt, 2.0, 300.0, rnd).total_seconds() for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= min(300.0, 2.0 * 2**attempt)
        assert max(waits) > 0.5 * min(300.0, 2.0 * 2**attempt)  # spread, not a constant


def test_reward_items_read_naturally_in_each_locale() -> None:
    items = [{"kind": "credit_fen", "amount": 200}, {"kind": "data_mb", "amount": 150}]
    assert describe_rewards(items, "zh-CN") == "2元话费、150MB流量"
    assert describe_rewards(items, "en") == "2 yuan credit, 150 MB data"


def test_broadcast_is_paced_and_stays_inside_the_window() -> None:
    p = Policy("marketing")  # 08:00–21:00
    times = paced_schedule(5, at(20, 59, 58), 1.0, p, TZ)
    assert times[:2] == [at(20, 59, 58), at(20, 59, 59)]
    assert times[2:] == [at(8, 0, 0, 23), at(8, 0, 1, 23), at(8, 0, 2, 23)]
    early = paced_schedule(2, at(6), 10.0, p, TZ)
    assert early == [at(8), at(8) + timedelta(seconds=0.1)]


def test_a_category_without_a_stored_policy_gets_the_spec_defaults() -> None:
    stored = {"reward": Policy("reward", daily_cap=10)}
    assert policy_for(stored, "reward").daily_cap == 10
    default = policy_for(stored, "service")
    assert (default.daily_cap, default.window_start, default.window_end) == (3, time(8), time(21))


def test_a_notice_expires_its_ttl_after_it_is_first_due() -> None:
    p = Policy("reward", ttl=timedelta(hours=48))
    now, later = at(12), at(15)
    now_notice = NewNotification("grant:1", "u1", "t", "reward", "im", "zh-CN", {})
    paced = NewNotification("broadcast:1", "u1", "t", "reward", "im", "zh-CN", {}, later)
    due_now, due_later = schedule([now_notice, paced], {"reward": p}, now)
    assert (due_now.not_before, due_now.expires_at) == (now, now + timedelta(hours=48))
    assert (due_later.not_before, due_later.expires_at) == (later, later + timedelta(hours=48))


def test_each_decision_names_the_status_the_message_moves_to() -> None:
    assert [Decision(a).status for a in ("send", "defer", "expire", "suppress", "fail")] == [
        "sending", "deferred", "expired", "suppressed", "failed",
    ]  # fmt: skip
    assert [Decision(a).ends for a in ("send", "defer", "expire", "suppress", "fail")] == [
        False, False, True, True, True,
    ]  # fmt: skip
    assert (CAP_USED_UP.status, CAP_USED_UP.reason) == ("suppressed", "daily_cap")


def test_im_falls_back_to_sms_and_sms_has_no_fallback() -> None:
    assert channels_for("im") == ("im", "sms")
    assert channels_for("sms") == ("sms",)


def test_only_an_undelivered_end_gives_the_cap_slot_back() -> None:
    assert all(gives_slot_back(s) for s in ("failed", "expired", "suppressed"))
    assert not any(gives_slot_back(s) for s in ("sent", "delivered", "sending", "deferred"))


def test_a_retryable_failure_is_tried_again_after_a_jittered_backoff() -> None:
    now = at(12)
    retry = next_attempt(2, True, 5, now, 2.0, random.Random(7))
    assert retry is not None and now <= retry <= now + timedelta(seconds=8)


def test_a_failure_ends_when_retrying_cannot_help_or_attempts_are_used_up() -> None:
    assert next_attempt(1, False, 5, at(12), 2.0) is None
    assert next_attempt(5, True, 5, at(12), 2.0) is None
    assert next_attempt(4, True, 5, at(12), 2.0) is not None


def test_a_broadcast_is_approved_once_and_never_by_its_creator() -> None:
    check_approval(7, PENDING, "owner", "approver")
    with pytest.raises(Forbidden, match="by its creator"):
        check_approval(7, PENDING, "owner", "owner")
    for status in (APPROVED, CANCELLED):
        with pytest.raises(Conflict, match=f"broadcast 7 is {status}"):
            check_approval(7, status, "owner", "approver")


def test_a_broadcast_is_cancelled_once() -> None:
    check_cancel(7, PENDING)
    check_cancel(7, APPROVED)  # what has not been sent yet is suppressed
    with pytest.raises(Conflict, match="already cancelled"):
        check_cancel(7, CANCELLED)


def test_a_broadcast_fans_out_one_paced_notice_per_recipient() -> None:
    draft = BroadcastDraft("weekend", "promo", "marketing", "im", "zh-CN", {"name": "x"}, {}, 2.0)
    notices = fan_out(9, draft, ["u1", "u2", "u3"], at(12), Policy("marketing"), TZ)
    assert [(n.source, n.user_id, n.template, n.params) for n in notices] == [
        ("broadcast:9", u, "promo", {"name": "x"}) for u in ("u1", "u2", "u3")
    ]
    assert [n.not_before for n in notices] == [
        at(12),
        at(12) + timedelta(seconds=0.5),
        at(12, 0, 1),
    ]


def _grant(**overrides: object) -> GrantRecord:
    doc = {
        "event": "recorded", "grant_id": 5, "campaign_id": "cmp_000000000001",
        "campaign_name": "Play and get gifts", "version": 1, "rule_id": "r", "role": "user",
        "user_id": "u1", "period": "campaign", "status": "granted",
        "items": [{"kind": "credit_fen", "amount": 200}], "fulfil_by": "2026-12-10",
        **overrides,
    }  # fmt: skip
    return GrantRecord.model_validate_json(orjson.dumps(doc))  # as read from the topic


def test_a_recorded_grant_becomes_a_reward_notice_in_the_users_words() -> None:
    notice = grant_notice(_grant())
    assert notice is not None
    assert (notice.source, notice.template, notice.category, notice.channel) == (
        "grant:5", "reward_granted", "reward", "im",
    )  # fmt: skip
    assert notice.params == {
        "campaign": "Play and get gifts", "rewards": "2元话费", "fulfil_by": "2026-12-10",
    }  # fmt: skip


def test_a_reward_notice_and_its_resend_carry_the_grants_campaign_rule_and_period() -> None:
    notice = grant_notice(_grant(rule_id="checkin", period="2026-03"))
    assert notice is not None
    assert (notice.campaign_id, notice.rule_id, notice.period) == (
        "cmp_000000000001", "checkin", "2026-03",
    )  # fmt: skip
    again = resend_notice(notice, 41, 1)
    assert (again.source, again.resent_from) == ("resend:41:1", 41)
    assert (again.campaign_id, again.rule_id, again.period) == (
        notice.campaign_id, notice.rule_id, notice.period,
    )  # fmt: skip


def test_revoked_or_unfunded_grants_send_nothing() -> None:
    assert grant_notice(_grant(event="revoked")) is None
    assert grant_notice(_grant(status="budget_exhausted")) is None


@pytest.mark.parametrize("reply", ["TD", " td ", "退订", "Stop", "unsubscribe"])
def test_an_unsubscribe_reply_opts_out(reply: str) -> None:
    assert is_unsubscribe(reply)


@pytest.mark.parametrize("reply", ["", "hello", "TD please", "ok"])
def test_other_replies_change_nothing(reply: str) -> None:
    assert not is_unsubscribe(reply)


def test_sms_template_length_counts_with_placeholders_empty() -> None:
    assert sms_length("im", "{name}你好", ["name"]) is None
    seg = sms_length("sms", "你好{name}，{gift}到了", ["name", "gift"])
    assert seg is not None and (seg.encoding, seg.units, seg.count) == ("UCS-2", 5, 1)


def test_a_locale_without_its_own_template_falls_back_to_zh_cn() -> None:
    texts = {"zh-CN": "你好", "en": "Hello"}
    assert in_locale(texts, "en") == "Hello"
    assert in_locale({"zh-CN": "你好"}, "en") == "你好"
    assert in_locale({"en": "Hello"}, "zh-CN") is None
    assert locales_to_try("zh-CN") == ("zh-CN",)
