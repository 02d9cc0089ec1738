"""Who may say what (SPEC §14). Pure: no I/O.

A user token speaks for its own user: the client event types, plus `group_dissolved` (scoring
applies it only if that user owns the group), every event with `user_id` = the token's `sub`.
An `ingest` key is a server relay of client event types; a `platform` key (or `admin`) may post
every type; an `importer` loads history of every type. A narrowed key posts only its listed
types. Each accepted event is stamped with the authority that vouched for it, and scoring
trusts group facts and points only from `platform` or `import`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.auth import Principal, Role
from shared.contract import EVENT_TYPES, Authority, Event, Rejection

CLIENT_EVENT_TYPES = frozenset(
    {"message", "login", "logout", "checkin", "friend_added", "group_join", "group_leave"}
)
USER_TOKEN_EVENT_TYPES = CLIENT_EVENT_TYPES | {"group_dissolved"}
ALL_EVENT_TYPES = frozenset(EVENT_TYPES)
# Who may post a type, for the rejection message (server types need `platform`).
_NEEDS = {
    **{t: "a user token, an ingest key or a platform key" for t in CLIENT_EVENT_TYPES},
    "group_dissolved": "the owner's user token or a platform key",
}


def _names(types: frozenset[str]) -> str:
    return ", ".join(t for t in EVENT_TYPES if t in types)


@dataclass(frozen=True, slots=True)
class Speaker:
    """A request's author as ingest sees it: the authority its events carry, their `source`,
    the types it may post, the one user it may speak for (a user token) and its rate."""

    authority: Authority
    source: str
    allowed_types: frozenset[str]
    described: str  # "a user token", "an ingest (relay) key", … for rejection messages
    rate_key: str
    rate_per_s: float
    user_id: str | None = None
    narrowed: bool = False

    def judge(self, event: Event) -> Rejection | None:
        """None if this speaker may post `event`, else why not (a per-item rejection)."""
        if event.type not in self.allowed_types:
            if self.narrowed:
                hint = f"this key is narrowed to {_names(self.allowed_types)}"
            else:
                hint = (
                    f"it needs {_NEEDS.get(event.type, 'a platform key')}; {self.described} "
                    f"may post {_names(self.allowed_types)}"
                )
            return Rejection("type_not_allowed", f"type: '{event.type}' is not allowed: {hint}")
        if self.user_id is not None and event.user_id != self.user_id:
            return Rejection(
                "user_mismatch",
                f"user_id: '{event.user_id}' is not the token's user; a user token speaks for "
                "its own user only",
            )
        return None


def user_speaker(sub: str, rate_per_s: float) -> Speaker:
    return Speaker(
        authority="user",
        source=f"user:{sub}",
        allowed_types=USER_TOKEN_EVENT_TYPES,
        described="a user token",
        rate_key=f"user:{sub}",
        rate_per_s=rate_per_s,
        user_id=sub,
    )


def key_speaker(principal: Principal, importing: bool) -> Speaker:
    """The speaker for a key already admitted to the endpoint (`importer` for history,
    `ingest` or `platform` for live events)."""
    authority: Authority
    if importing:
        authority, allowed, described = "import", ALL_EVENT_TYPES, "an importer key"
    elif principal.has(Role.PLATFORM):
        authority, allowed, described = "platform", ALL_EVENT_TYPES, "a platform key"
    else:
        authority, allowed, described = "relay", CLIENT_EVENT_TYPES, "an ingest (relay) key"
    narrowed = principal.event_types is not None
    if principal.event_types is not None:
        allowed = allowed & principal.event_types
    return Speaker(
        authority=authority,
        source=principal.key_id,
        allowed_types=allowed,
        described=described,
        rate_key=principal.key_id,
        rate_per_s=principal.rate_per_s,
        narrowed=narrowed,
    )
