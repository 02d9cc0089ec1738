"""How notify's operations chain (OpenAPI links): a template version from its saving to its
review, a broadcast from its creation to its approval or cancelling, a user's opt-out and
notifications, a notification to its resending."""

from __future__ import annotations

from shared.openapi_links import Link

TEMPLATE = "/v1/templates/{name}/{channel}/{locale}"
_SAVED = {
    "name": "$response.body#/name",
    "channel": "$response.body#/channel",
    "locale": "$response.body#/locale",
}
_SAVED_VERSION = {**_SAVED, "version": "$response.body#/version"}
TEMPLATE_LINKS = [
    Link(f"PUT {TEMPLATE}", f"GET {TEMPLATE}", _SAVED, "The template's live version"),
    Link(f"PUT {TEMPLATE}", f"GET {TEMPLATE}/versions", _SAVED, "Its versions, this one first"),
    Link(
        f"PUT {TEMPLATE}",
        f"POST {TEMPLATE}/versions/{{version}}:approve",
        _SAVED_VERSION,
        "Approve the version just saved (not by its author): it goes live",
    ),
    Link(
        f"PUT {TEMPLATE}",
        f"POST {TEMPLATE}/versions/{{version}}:reject",
        _SAVED_VERSION,
        "Reject the version just saved: the live one stays",
    ),
    *(
        Link(
            f"POST {TEMPLATE}/versions/{{version}}:{action}",
            f"GET {TEMPLATE}",
            _SAVED,
            f"The template once its version was {done}",
        )
        for action, done in (("approve", "approved"), ("reject", "rejected"))
    ),
]

BROADCAST = "/v1/broadcasts/{broadcast_id}"
_BROADCAST = {"broadcast_id": "$response.body#/broadcast_id"}
BROADCAST_LINKS = [
    *(
        Link(source, f"{method} {BROADCAST}{suffix}", _BROADCAST, f"{what}: {text}")
        for source, what in (
            ("POST /v1/broadcasts", "The broadcast just created"),
            (f"POST {BROADCAST}:approve", "The broadcast just approved"),
        )
        for method, suffix, text in (
            ("GET", "", "its status and counts"),
            ("GET", "/preview", "its rendered text and recipient count"),
            ("GET", "/recipients", "its recipients"),
            ("POST", ":approve", "approve it (not by its creator)"),
            ("POST", ":cancel", "cancel it"),
        )
    ),
    Link(f"POST {BROADCAST}:cancel", f"GET {BROADCAST}", _BROADCAST, "The broadcast cancelled"),
]

USER = "/v1/users/{user_id}"
_SAME_USER = {"user_id": "$request.path.user_id"}
_FIRST_NOTIFICATION = {"notification_id": "$response.body#/items/0/id"}
USER_LINKS = [
    Link(f"PUT {USER}/opt-out", f"DELETE {USER}/opt-out", _SAME_USER, "Opt the user back in"),
    Link(f"PUT {USER}/opt-out", f"GET {USER}/notifications", _SAME_USER, "Their notifications"),
    Link(f"DELETE {USER}/opt-out", f"PUT {USER}/opt-out", _SAME_USER, "Opt them out again"),
    Link(f"GET {USER}/notifications", f"GET {USER}/timeline", _SAME_USER, "In order, digests"),
    Link(
        f"GET {USER}/notifications",
        "POST /v1/notifications/{notification_id}:resend",
        _FIRST_NOTIFICATION,
        "Send the first notification listed (their oldest) again",
    ),
    Link(
        "POST /v1/notifications/{notification_id}:resend",
        f"GET {USER}/notifications",
        {"user_id": "$response.body#/user_id"},
        "The user's notifications, the resent one among them",
    ),
]

LINKS = [*TEMPLATE_LINKS, *BROADCAST_LINKS, *USER_LINKS]
