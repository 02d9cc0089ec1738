"""Reward digests (SPEC §11): the reward notices waiting for one user are merged into one
message when sent ("您获得3项奖励：…"), which takes one daily cap slot; what does not fit the
user's slots waits for their next local day, never suppressed.

The dispatcher asks `compose` for the messages of one user's due notices, in the order they
take cap slots: messages that already hold one (a retry, a send left by a crash) first, then
digests with `credit_fen` rewards first, then the rest. A digest goes out under the id of its
first member (its `digest_id`, also the provider's message id), and every member records it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.notify.domain.fulfilment import fulfilment
from services.notify.domain.notices import REWARD_TEMPLATE
from services.notify.domain.templates import DEFAULT_LOCALE

DIGEST_TEMPLATE = "reward_digest"
MAX_DIGEST_ITEMS = 20  # a longer list is a wall of text; the rest goes in the next digest
_ITEM = {
    "zh-CN": "「{campaign}」{rewards}，{fulfilment}",
    "en": "{campaign}: {rewards}, {fulfilment}",
}
_JOIN = {"zh-CN": "；", "en": "; "}


@dataclass(frozen=True, slots=True)
class Pending:
    """A due notice of one user, as far as composing messages goes."""

    id: int
    template: str
    category: str
    channel: str
    locale: str
    priority: int
    digest_id: int | None  # set once it went out (or began to) in a digest
    cap_day: date | None  # set once it took (or shares) a cap slot


@dataclass(frozen=True, slots=True)
class Message:
    """What goes to the provider as one message."""

    message_id: int  # the provider's id: the lead member's (a digest's `digest_id`)
    members: tuple[int, ...]  # notification ids, in the order they are listed
    category: str
    digest: bool  # rendered from the digest template, not the members' own
    holds_slot: bool  # a retried message keeps the cap slot it took


def _rank(p: Pending) -> tuple[int, int]:
    return (p.priority, p.id)


def compose(pending: Iterable[Pending]) -> list[Message]:
    """One user's due notices → messages, in the order they take cap slots."""
    retried: dict[int, list[Pending]] = {}
    fresh: dict[tuple[str, str, str], list[Pending]] = {}
    singles: list[Pending] = []
    for p in pending:
        if p.digest_id is not None:
            retried.setdefault(p.digest_id, []).append(p)
        elif p.template == REWARD_TEMPLATE and p.cap_day is None:
            fresh.setdefault((p.category, p.channel, p.locale), []).append(p)
        else:
            singles.append(p)
    out: list[Message] = []
    for digest_id, members in retried.items():
        ids = tuple(p.id for p in sorted(members, key=_rank))
        out.append(Message(digest_id, ids, members[0].category, True, True))
    for group in fresh.values():
        ordered = sorted(group, key=_rank)
        for i in range(0, len(ordered), MAX_DIGEST_ITEMS):
            chunk = ordered[i : i + MAX_DIGEST_ITEMS]
            ids = tuple(p.id for p in chunk)
            out.append(Message(ids[0], ids, chunk[0].category, len(chunk) > 1, False))
    out += [Message(p.id, (p.id,), p.category, False, p.cap_day is not None) for p in singles]
    priority = {p.id: p.priority for group in fresh.values() for p in group}
    priority |= {p.id: p.priority for p in singles}
    return sorted(out, key=lambda m: (not m.holds_slot, priority.get(m.message_id, -1),
                                      m.message_id))  # fmt: skip


def digest_params(
    items: Sequence[Mapping[str, Any]], locale: str, today: date
) -> dict[str, object]:
    """The digest template's params: how many rewards, and each one with its (true) promise."""
    item = _ITEM.get(locale, _ITEM[DEFAULT_LOCALE])
    lines = [
        item.format(
            campaign=p.get("campaign", ""),
            rewards=p.get("rewards", ""),
            fulfilment=fulfilment(p.get("fulfil_by"), locale, today),
        )
        for p in items
    ]
    return {"count": len(items), "rewards": _JOIN.get(locale, _JOIN[DEFAULT_LOCALE]).join(lines)}
