"""What a reward notice promises about its reward (SPEC §11): "将于{fulfil_by}前到账" only while
that day has not passed in the user's local time. A notice sent later (it waited for the next
day's cap, a window, a retry) says the reward comes as soon as possible instead: a notice never
promises a date that has passed. Whether the reward did arrive is rewards' fulfilment status."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from services.notify.domain.templates import DEFAULT_LOCALE, placeholders_in, render

_ON_TIME = {"zh-CN": "将于{date}前到账", "en": "delivered by {date}"}
_LATE = {"zh-CN": "将尽快到账", "en": "delivered as soon as possible"}
# The seeded reward_granted texts. A saved template that still says "{fulfil_by}" cannot be
# trusted once the date has passed, so those notices are rendered from these instead.
REWARD_TEXTS = {
    ("im", "zh-CN"): "恭喜！您在「{campaign}」活动中获得{rewards}，{fulfilment}。",
    ("sms", "zh-CN"): "【飞信】恭喜！您在「{campaign}」活动中获得{rewards}，{fulfilment}。回TD退订",
    ("im", "en"): "Congratulations! {campaign} rewards you with {rewards}, {fulfilment}.",
    ("sms", "en"): "Congratulations! {campaign} rewards you with {rewards}, {fulfilment}.",
}


def promise_holds(fulfil_by: object, today: date) -> bool:
    """True while the fulfil-by day (ISO date) is today or later; no date promises nothing."""
    if not isinstance(fulfil_by, str):
        return True
    try:
        return date.fromisoformat(fulfil_by[:10]) >= today
    except ValueError:
        return False  # not a date we can vouch for: do not repeat it


def fulfilment(fulfil_by: object, locale: str, today: date) -> str:
    """The clause about when the reward arrives, true on `today`."""
    if promise_holds(fulfil_by, today):
        return _ON_TIME.get(locale, _ON_TIME[DEFAULT_LOCALE]).format(date=fulfil_by)
    return _LATE.get(locale, _LATE[DEFAULT_LOCALE])


def with_fulfilment(params: Mapping[str, Any], locale: str, today: date) -> dict[str, Any]:
    """The params with `fulfilment` added when they carry a `fulfil_by`."""
    out = dict(params)
    if "fulfil_by" in params:
        out["fulfilment"] = fulfilment(params["fulfil_by"], locale, today)
    return out


def render_notice(
    text: str, params: Mapping[str, Any], channel: str, locale: str, today: date
) -> str:
    """A notice's text as sent on `today` (the user's local day): a template that would print
    a fulfil-by date already past gives way to the default wording, which does not."""
    if "fulfil_by" in placeholders_in(text) and not promise_holds(params.get("fulfil_by"), today):
        text = REWARD_TEXTS.get((channel, locale)) or REWARD_TEXTS[(channel, DEFAULT_LOCALE)]
    return render(text, with_fulfilment(params, locale, today))
