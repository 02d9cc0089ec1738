"""What a reward notice says: a grant's items in the user's language (SPEC §1 rewards)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

_ITEMS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "credit_fen": "{yuan}元话费",
        "sms": "{n}条短信",
        "mms": "{n}条彩信",
        "data_mb": "{n}MB流量",
        "points": "{n}积分",
        "ticket": "{n}张抽奖券",
        "prize": "{n}份奖品",
    },
    "en": {
        "credit_fen": "{yuan} yuan credit",
        "sms": "{n} SMS",
        "mms": "{n} MMS",
        "data_mb": "{n} MB data",
        "points": "{n} points",
        "ticket": "{n} lottery ticket(s)",
        "prize": "{n} prize(s)",
    },
}
_JOIN = {"zh-CN": "、", "en": ", "}


def describe_rewards(items: Iterable[Mapping[str, object]], locale: str) -> str:
    """`[{"kind": "credit_fen", "amount": 200}, ...]` → "2元话费、20条短信"."""
    words = _ITEMS.get(locale, _ITEMS["zh-CN"])
    parts = []
    for item in items:
        kind, amount = str(item["kind"]), int(str(item["amount"]))
        yuan = f"{amount / 100:g}"
        parts.append(words.get(kind, "{n} " + kind).format(n=amount, yuan=yuan))
    return _JOIN.get(locale, "、").join(parts)
