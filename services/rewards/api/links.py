"""How rewards' operations chain (OpenAPI links): a campaign from its creation through its
versions' review to its lifecycle, enrollments and report; a grant from the ledger to its
fulfilment or revocation."""

from __future__ import annotations

from shared.openapi_links import Link

CAMPAIGN = "/v1/campaigns/{campaign_id}"
VERSION = f"{CAMPAIGN}/versions/{{version}}"
_CREATED = {"campaign_id": "$response.body#/campaign_id"}
_FIRST_VERSION = {**_CREATED, "version": "$response.body#/versions/0/version"}
_SAME = {"campaign_id": "$request.path.campaign_id"}


def _campaign_links(source: str, ids: dict[str, str], what: str) -> list[Link]:
    """From a response that names a campaign (`ids`) to everything done with one."""
    versioned = {**ids, "version": "$response.body#/versions/0/version"}
    reads = [
        ("GET", CAMPAIGN, "Read it back"),
        ("PUT", f"{CAMPAIGN}/draft", "Save a new draft version of it"),
        ("POST", f"{CAMPAIGN}/versions:fork", "Fork a new draft from one of its versions"),
        ("GET", f"{CAMPAIGN}/audit", "Every change made to it"),
        ("GET", f"{CAMPAIGN}/enrollments", "The groups enrolled in it"),
        ("POST", f"{CAMPAIGN}/enrollments", "Enroll a group in it"),
        ("GET", f"{CAMPAIGN}/draws", "Its draws"),
        ("GET", f"{CAMPAIGN}/settlements", "Its settled periods"),
        ("GET", f"{CAMPAIGN}/exclusions", "Who is excluded from it"),
        ("PUT", f"{CAMPAIGN}/exclusions", "Exclude users or groups from it"),
        ("GET", f"{CAMPAIGN}/report", "Its report"),
    ]
    acts = [
        ("activate", "Make its newest approved version live"),
        ("pause", "Pause it"),
        ("resume", "Resume it"),
        ("end", "End it"),
    ]
    versions = [
        ("submit", "Submit its first version for approval"),
        ("approve", "Approve its first version (an approver who neither wrote nor submitted it)"),
        ("reject", "Send its first version back to draft"),
        ("simulate", "Backtest its first version"),
    ]
    return [
        *(Link(source, f"{m} {p}", ids, f"{what}: {text}") for m, p, text in reads),
        *(Link(source, f"POST {CAMPAIGN}:{a}", ids, f"{what}: {text}") for a, text in acts),
        *(Link(source, f"POST {VERSION}:{a}", versioned, f"{what}: {t}") for a, t in versions),
    ]


CAMPAIGN_LINKS = [
    *_campaign_links("POST /v1/campaigns", _CREATED, "The campaign just created"),
    *_campaign_links(f"PUT {CAMPAIGN}/draft", _SAME, "The campaign whose draft was saved"),
    *_campaign_links(f"POST {VERSION}:submit", _SAME, "The campaign with a version submitted"),
    *_campaign_links(f"POST {VERSION}:approve", _SAME, "The campaign with a version approved"),
    *_campaign_links(f"POST {CAMPAIGN}:activate", _SAME, "The campaign just activated"),
    *(
        Link(
            f"POST {VERSION}:{action}",
            f"POST {VERSION}:{then}",
            {**_SAME, "version": "$request.path.version"},
            f"The same version: {text}",
            name=f"{then}_this_version",
        )
        for action, then, text in (
            ("submit", "approve", "approve it"),
            ("submit", "reject", "send it back to draft"),
            ("approve", "simulate", "backtest it"),
            ("reject", "submit", "submit it again"),
        )
    ),
    Link(
        f"POST {CAMPAIGN}/enrollments",
        f"GET {CAMPAIGN}/enrollments",
        {"campaign_id": "$response.body#/campaign_id"},
        "The campaign's enrollments, the new one among them",
    ),
]

GRANT = "/v1/grants/{grant_id}"
_LISTED_GRANT = {"grant_id": "$response.body#/items/0/grant_id"}
GRANT_LINKS = [
    Link("GET /v1/grants", f"GET {GRANT}", _LISTED_GRANT, "The first grant listed, explained"),
    Link("GET /v1/grants", f"POST {GRANT}:fulfil", _LISTED_GRANT, "Report it fulfilled"),
    Link("GET /v1/grants", f"POST {GRANT}:revoke", _LISTED_GRANT, "Revoke it"),
    *(
        Link(
            f"POST {GRANT}:{action}",
            f"GET {GRANT}",
            {"grant_id": "$response.body#/grant_id"},
            f"The grant just {done}, read back",
        )
        for action, done in (("fulfil", "fulfilled"), ("revoke", "revoked"))
    ),
]

LINKS = [*CAMPAIGN_LINKS, *GRANT_LINKS]
