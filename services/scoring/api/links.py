"""How scoring's operations chain (OpenAPI links): a weight profile from its saving to its
review and deletion."""

from __future__ import annotations

from shared.openapi_links import Link

PROFILE = "/v1/profiles/{name}"
_SAVED = {"name": "$response.body#/name"}
_STEPS = (
    ("GET", "", "read it back, with any pending change"),
    ("POST", ":approve", "apply its pending change (an approver who did not propose it)"),
    ("POST", ":reject", "drop its pending change"),
    ("DELETE", "", "delete it"),
)
LINKS = [
    *(
        Link(source, f"{method} {PROFILE}{suffix}", _SAVED, f"{what}: {text}")
        for source, what in (
            (f"PUT {PROFILE}", "The profile just saved"),
            (f"POST {PROFILE}:approve", "The profile whose change was applied"),
            (f"POST {PROFILE}:reject", "The profile whose change was dropped"),
        )
        for method, suffix, text in _STEPS
    ),
    Link("GET /v1/profiles", f"GET {PROFILE}", {"name": "$response.body#/0/name"}, "The first"),
    Link(f"DELETE {PROFILE}", f"GET {PROFILE}", {"name": "$request.path.name"}, "Now 404"),
]
