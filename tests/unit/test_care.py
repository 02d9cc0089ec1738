"""`engage care`: the story a care agent reads out (engage/care.py), from what the services say."""

from __future__ import annotations

from typing import Any

from engage.care import Story, lines, render, summary, told


def grant(grant_id: int, created_at: str, **overrides: Any) -> dict[str, Any]:
    return {"grant_id": grant_id, "campaign_id": "cmp_000000000001", "campaign_name": "Play",
            "period": "campaign", "status": "granted", "items": [{"kind": "sms", "amount": 20}],
            "fulfil_by": "2026-12-10", "fulfilment": "pending", "created_at": created_at,
            **overrides}  # fmt: skip


def notice(source: str, status: str, at: str, **overrides: Any) -> dict[str, Any]:
    return {"notification_id": 1, "source": source, "template": "reward_granted",
            "category": "reward", "channel": "im", "status": status, "reason": None,
            "attempts": 1, "digest_id": None, "sent_channel": "im", "at": at,
            "not_before": at, **overrides}  # fmt: skip


def story() -> Story:
    return Story(
        "u1",
        days=[{"day": "2026-11-02", "messages": 12, "online_seconds_mobile": 2700}],
        grants=[
            grant(7, "2026-11-03T10:00:00+08:00"),
            grant(8, "2026-11-03T10:00:01+08:00", fulfilment="overdue"),
        ],
        notices=[
            notice("grant:7", "delivered", "2026-11-03T10:00:02+08:00", digest_id=41),
            notice(
                "grant:8",
                "deferred",
                "2026-11-03T10:00:02+08:00",
                reason="daily_cap",
                not_before="2026-11-04T08:00:00+08:00",
                sent_channel=None,
            ),
            notice(
                "broadcast:3",
                "suppressed",
                "2026-11-01T09:00:00+08:00",
                category="marketing",
                template="promo",
                reason="daily_cap",
            ),
        ],
        unknown_to=[],
    )


def test_the_summary_answers_i_won_but_got_no_message() -> None:
    head = summary(story())
    assert head[1] == (
        "  1 day(s) with activity in scoring; 2 reward(s) granted, 1 not yet told, 1 overdue; "
        "3 notice(s)"
    )
    assert head[2] == (
        "  not yet told: grant #8 — waiting (daily_cap) until 2026-11-04T08:00:00+08:00"
    )


def test_each_grant_is_told_with_its_notice_and_the_story_is_in_time_order() -> None:
    got = lines(story())
    assert [line.service for line in got] == ["notify", "scoring", "rewards", "rewards"]
    assert "told: delivered via im in digest #41" in got[2].text
    assert "fulfilment overdue (by 2026-12-10)" in got[3].text
    assert got[0].text == "marketing «promo»: suppressed (daily_cap)"


def test_a_grant_notify_never_received_says_so() -> None:
    assert told(None) == "no notice yet (notify has not received the grant)"


def test_a_service_that_never_saw_the_user_is_named() -> None:
    s = Story("u009999", unknown_to=["scoring", "rewards", "notify"])
    text = render(s)
    assert "scoring: never saw this user (check the id)" in text
    assert "0 reward(s) granted" in text
