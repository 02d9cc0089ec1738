"""Notify domain (SPEC §6): templates, SMS segmentation, windows, TTL, caps by local day,
backoff — pure, no I/O."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.notify.domain.messages import describe_rewards
from services.notify.domain.policy import Policy, backoff, decide, local_day
from services.notify.domain.templates import TemplateError, render, sms_segments, validate

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
    from services.notify.domain.broadcast import paced_schedule

    p = Policy("marketing")  # 08:00–21:00
    times = paced_schedule(5, at(20, 59, 58), 1.0, p, TZ)
    assert times[:2] == [at(20, 59, 58), at(20, 59, 59)]
    assert times[2:] == [at(8, 0, 0, 23), at(8, 0, 1, 23), at(8, 0, 2, 23)]
    early = paced_schedule(2, at(6), 10.0, p, TZ)
    assert early == [at(8), at(8) + timedelta(seconds=0.1)]
