"""Who may state a group's facts, and which statements stand (SPEC §14 "group facts are not
rewritten"). Pure: the use case (usecases/group_facts.py) reads the stored groups and performs
the decisions.

- `points`, `bonus_card`, `group_created` and `group_owner_changed` need a server's word
  (authority `platform` or `import`); a user token or a relay key cannot state them.
- The first accepted `group_created` of a group id (first processed) defines its owner, name
  and province; any later one, backdated or not, changes nothing.
- `group_dissolved` stands with authority `platform`/`import`, or `user` when the user is the
  group's current owner.
- The current owner is the user of the latest accepted `group_owner_changed` by
  (occurred_at, event_id), else the creator: transfers from different users travel on different
  partitions, so "latest processed" would depend on arrival order.

A refused event is still in the ledger (it was processed, once) but changes nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from shared.contract import (
    Envelope,
    GroupCreatedEvent,
    GroupDissolvedEvent,
    GroupOwnerChangedEvent,
)

RefusalReason = Literal["authority_not_allowed", "group_already_created", "not_group_owner"]
REFUSAL_REASONS: tuple[RefusalReason, ...] = (
    "authority_not_allowed",
    "group_already_created",
    "not_group_owner",
)
SERVER_AUTHORITIES = frozenset({"platform", "import"})
# Types only a server may state (SPEC §14); `group_dissolved` is also the owner's own word.
SERVER_ONLY_TYPES = frozenset({"points", "bonus_card", "group_created", "group_owner_changed"})
# Types whose acceptance depends on the group's stored facts.
FACT_TYPES = frozenset({"group_created", "group_dissolved", "group_owner_changed"})


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """What decides the group-fact events of a group: whether it was created, and its owner."""

    created: bool = False
    creator_id: str | None = None
    transfer_at: datetime | None = None  # the latest accepted owner change
    transfer_event_id: str | None = None
    transfer_to: str | None = None

    @property
    def owner_id(self) -> str | None:
        return self.transfer_to if self.transfer_to is not None else self.creator_id


NO_FACTS = GroupFacts()


@dataclass(frozen=True, slots=True)
class Refusal:
    """A valid event a rule refused: it is audited and counted, never applied."""

    event_id: str
    type: str
    user_id: str
    group_id: str | None
    authority: str
    source: str
    occurred_at: datetime
    reason: RefusalReason


@dataclass(slots=True)
class Screening:
    accepted: list[Envelope] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    # The facts of each group a fact event touched, after the batch (what the store keeps).
    facts: dict[str, GroupFacts] = field(default_factory=dict)


def groups_to_check(envelopes: Iterable[Envelope]) -> set[str]:
    """The groups whose stored facts decide some event of the batch."""
    return {g for env in envelopes if (g := _fact_group(env)) is not None}


def screen(envelopes: Iterable[Envelope], stored: Mapping[str, GroupFacts]) -> Screening:
    """Accept or refuse each event in processing order (the batch's order)."""
    out = Screening()
    facts = dict(stored)
    for env in envelopes:
        e = env.event
        reason: RefusalReason | None = None
        if _needs_server(env) and env.authority not in SERVER_AUTHORITIES:
            reason = "authority_not_allowed"
        elif (group_id := _fact_group(env)) is not None:
            now = facts.get(group_id, NO_FACTS)
            if e.type == "group_created":
                if now.created:
                    reason = "group_already_created"
                else:
                    facts[group_id] = replace(now, created=True, creator_id=e.user_id)
            elif e.type == "group_owner_changed":
                if now.transfer_at is None or (e.occurred_at, e.event_id) > (
                    now.transfer_at,
                    now.transfer_event_id or "",
                ):
                    facts[group_id] = replace(
                        now,
                        transfer_at=e.occurred_at,
                        transfer_event_id=e.event_id,
                        transfer_to=e.user_id,
                    )
            elif env.authority == "user" and (now.owner_id is None or now.owner_id != e.user_id):
                reason = "not_group_owner"
        if reason is None:
            out.accepted.append(env)
        else:
            out.refused.append(
                Refusal(
                    e.event_id,
                    e.type,
                    e.user_id,
                    getattr(e, "group_id", None),
                    env.authority,
                    env.source,
                    e.occurred_at,
                    reason,
                )
            )
    out.facts = {g: f for g, f in facts.items() if stored.get(g) != f}
    return out


def _needs_server(env: Envelope) -> bool:
    """A relay forwards client types only; a user token may dissolve (its owner is checked)."""
    kind = env.event.type
    return kind in SERVER_ONLY_TYPES or (kind == "group_dissolved" and env.authority == "relay")


def _fact_group(env: Envelope) -> str | None:
    """The group a group-fact event states something about (None for other types)."""
    e = env.event
    if isinstance(e, GroupCreatedEvent | GroupDissolvedEvent | GroupOwnerChangedEvent):
        return e.group_id
    return None
