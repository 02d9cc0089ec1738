"""The six campaigns of SPEC §1 as ready templates, each in the ordinary rule language, plus the
national annual "My Fetion" ranking and "weekend chat boost" (SPEC §10)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.rewards.domain.prices import SUGGESTED_FEN

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
        "description": "Each day, 500 winners among members of enrolled groups who checked in "
        "and whose online points that day are >= 4 or whose last month's points growth is > 50.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "enrollment_required": True,
        "rules": [
            {
                "id": "daily-draw",
                "kind": "lottery",
                "period": "day",
                "eligibility": {
                    "all": [
                        _leaf("user.member_of_enrolled_group", "==", 1),
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
        "description": "Each new friend added in a month is one ticket, and so is each ticket "
        "'My Fetion, my group' gave its winners' members that month; 20,000 winners a month, "
        "repeat wins allowed, 5 yuan a win.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "rules": [
            {
                "id": "friend-draw",
                "kind": "lottery",
                "period": "month",
                "tickets": "user.month.friends_added",
                "tickets_from": {"campaign": "My Fetion, my group", "rule_id": "top20-province"},
                "winners": 20_000,
                "repeat_winners": True,
                "rewards": [{"kind": "credit_fen", "amount": 500}],
            }
        ],
    }


def my_fetion_annual(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    return {
        "name": "My Fetion, national annual ranking",
        "description": "Each year, the top 100 enrolled groups nationwide by the year's "
        "vitality (the sum of its months'): the owner gets a prize, every member a ticket.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "enrollment_required": True,
        "review": True,
        "budgets": {"prize": 100},
        "rules": [
            {
                "id": "top100-national",
                "kind": "rank",
                "period": "year",
                "partition": "none",
                "top": 100,
                "owner_reward": {"kind": "prize", "amount": 1},
                "member_reward": {"kind": "ticket", "amount": 1},
            }
        ],
    }


def weekend_chat_boost(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
    return {
        "name": "Weekend chat boost",
        "description": "Users who send >= 30 mobile messages over a weekend get 50 MB; at most "
        "1,000 winners a weekend, first come.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "budgets": {"data_mb": 50 * 1000 * 60},
        "rules": [
            {
                "id": "weekend-boost",
                "kind": "threshold",
                "entity": "user",
                "period": "week",
                "days_of_week": [6, 7],
                "condition": _leaf("user.period.messages_mobile", ">=", 30),
                "max_grants": {"per_period": 1000},
                "rewards": [{"kind": "data_mb", "amount": 50}],
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
        "description": "A user who adds 2 new users (friends first seen within the window) as "
        "friends gets 10 yuan once.",
        "starts_at": starts_at,
        "ends_at": ends_at,
        "rules": [
            {
                "id": "two-friends",
                "kind": "threshold",
                "entity": "user",
                "period": "day",
                "once": "campaign",
                "condition": _leaf("user.campaign.new_friends_added", ">=", 2),
                "rewards": [{"kind": "credit_fen", "amount": 1000}],
            }
        ],
    }


# What a unit of each kind costs (SPEC §10 unit prices; domain/prices.py's suggestions, in fen).
# A "My Fetion" prize is the business's to set: 500 yuan stands in until it does.
PRIZE_PLACEHOLDER_FEN = 50_000.0


def _kinds(node: Any) -> set[str]:
    """Every reward kind a definition can pay."""
    if isinstance(node, dict):
        found = {node["kind"]} if isinstance(node.get("kind"), str) and "amount" in node else set()
        if isinstance(node.get("reward_kind"), str):  # a scaled rule pays one kind
            found.add(node["reward_kind"])
        return found.union(*(_kinds(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_kinds(v) for v in node))
    return set()


def priced(template: Template) -> Template:
    """The template with `unit_prices` for every kind it pays, so reports give money."""

    def definition(starts_at: datetime, ends_at: datetime) -> dict[str, Any]:
        doc = template(starts_at, ends_at)
        prices = {**SUGGESTED_FEN, "prize": PRIZE_PLACEHOLDER_FEN}
        doc["unit_prices"] = {k: prices[k] for k in sorted(_kinds(doc)) if k in prices}
        return doc

    definition.__name__ = template.__name__
    return definition


TEMPLATES: dict[str, Template] = {
    name: priced(t)
    for name, t in {
        "my_fetion_my_group": my_fetion_my_group,
        "tribe_chief": tribe_chief,
        "daily_checkin_draw": daily_checkin_draw,
        "new_friend_draw": new_friend_draw,
        "play_and_get_gifts": play_and_get_gifts,
        "invite_friends": invite_friends,
        "my_fetion_annual": my_fetion_annual,
        "weekend_chat_boost": weekend_chat_boost,
    }.items()
}
