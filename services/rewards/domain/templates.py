"""The six campaigns of SPEC §1 as ready templates, each in the ordinary rule language."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

Template = Callable[[datetime, datetime], dict[str, Any]]


def _leaf(metric: str, op: str, value: float) -> dict[str, Any]:
    return {"metric": metric, "op": op, "value": value}


def my_fetion_my_group(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    return {
        "name": "My Fetion, my group",
        "description": "Each month, per province, the top 20 enrolled groups by vitality: the "
        "owner gets a prize, every member a lottery ticket.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "enrollment_required": True,
        # Prizes for a month's leaderboard are held for an approver (SPEC §14: flagged groups
        # are shown first, with the reason), then released or the riggers excluded.
        "review": True,
        "budgets": {"prize": 34 * 20 * 12},
        "rules": [
            {
                "id": "top20-province",
                "kind": "rank",
                "partition": "province",
                "top": 20,
                "owner_reward": {"kind": "prize", "amount": 1},
                "member_reward": {"kind": "ticket", "amount": 1},
            }
        ],
    }


def tribe_chief(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    return {
        "name": "Tribe chief",
        "description": "Enrolled groups of >= 25 members with >= 80% active this month: the owner "
        "earns 1 yuan per effective active member (members of several enrolled groups do not "
        "count), at most 100 yuan; revoked if the group is dissolved before fulfilment.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "enrollment_required": True,
        "budgets": {"credit_fen": 10_000_000},
        "rules": [
            {
                "id": "chief-credit",
                "kind": "scaled",
                "entity": "group",
                "period": "month",
                "eligibility": {
                    "all": [
                        _leaf("group.month.members", ">=", 25),
                        _leaf("group.month.active_ratio", ">=", 0.8),
                    ]
                },
                "metric": "group.month.effective_active_members",
                "reward_kind": "credit_fen",
                "amount_per_unit": 100,
                "cap": 10_000,
                "revoke_if_group_dissolved": True,
            }
        ],
    }


def daily_checkin_draw(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    return {
        "name": "Daily check-in draw",
        "description": "Each day, 500 winners among users who checked in and whose online points "
        "that day are >= 4 or whose last month's points growth is > 50.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "rules": [
            {
                "id": "daily-draw",
                "kind": "lottery",
                "period": "day",
                "eligibility": {
                    "all": [
                        _leaf("user.day.checkins", ">=", 1),
                        {
                            "any": [
                                _leaf("user.day.online_points", ">=", 4),
                                _leaf("user.prev_month.points_delta", ">", 50),
                            ]
                        },
                    ]
                },
                "winners": 500,
                "rewards": [{"kind": "data_mb", "amount": 100}],
            }
        ],
    }


def new_friend_draw(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    return {
        "name": "New-friend draw",
        "description": "Each friend added in a month is one ticket; 20,000 winners a month, "
        "repeat wins allowed.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "rules": [
            {
                "id": "friend-draw",
                "kind": "lottery",
                "period": "month",
                "tickets": "user.month.friends_added",
                "winners": 20_000,
                "repeat_winners": True,
                "rewards": [{"kind": "points", "amount": 50}],
            }
        ],
    }


def play_and_get_gifts(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    return {
        "name": "Play and get gifts",
        "description": "A user's first message from the mobile client within the window earns "
        "2 yuan credit, 20 SMS, 20 MMS and 150 MB, fulfilled by the 10th of next month.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "rules": [
            {
                "id": "first-mobile-message",
                "kind": "threshold",
                "entity": "user",
                "period": "day",
                "once": "campaign",
                "condition": _leaf("user.day.messages_mobile", ">=", 1),
                "rewards": [
                    {"kind": "credit_fen", "amount": 200},
                    {"kind": "sms", "amount": 20},
                    {"kind": "mms", "amount": 20},
                    {"kind": "data_mb", "amount": 150},
                ],
            }
        ],
    }


def invite_friends(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    return {
        "name": "Invite friends",
        "description": "A user who adds 2 friends within the window gets 10 yuan once.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "rules": [
            {
                "id": "two-friends",
                "kind": "threshold",
                "entity": "user",
                "period": "day",
                "once": "campaign",
                "condition": _leaf("user.campaign.friends_added", ">=", 2),
                "rewards": [{"kind": "credit_fen", "amount": 1000}],
            }
        ],
    }


TEMPLATES: dict[str, Template] = {
    "my_fetion_my_group": my_fetion_my_group,
    "tribe_chief": tribe_chief,
    "daily_checkin_draw": daily_checkin_draw,
    "new_friend_draw": new_friend_draw,
    "play_and_get_gifts": play_and_get_gifts,
    "invite_friends": invite_friends,
}
