"""`POST /v1/events` and `POST /v1/events:import` (SPEC §3, §14). Thin: authenticate, read the
body, accept its events (the use case), answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, Field

from services.ingest.api.body import read_json_body
from services.ingest.domain.authority import Speaker, key_speaker, user_speaker
from services.ingest.usecases.accept_events import accept_events
from shared.api_auth import BEARER_SECURITY, UserCaller, authenticate, authorize
from shared.auth import Role
from shared.errors import Forbidden
from shared.http import PROBLEM_JSON, Problem

router = APIRouter(prefix="/v1", tags=["events"])


class RejectedItem(BaseModel):
    index: int = Field(description="Position of the event in the request (0 for a single event).")
    event_id: str | None
    code: str = Field(
        description="missing_field, unknown_field, invalid_field, unknown_type, "
        "out_of_window, out_of_range or invalid_event (the event itself); type_not_allowed "
        "(this caller may not post the type: server types need a platform key, a narrowed key "
        "posts only its types) or user_mismatch (a user token's event for another user)"
    )
    message: str = Field(description="Names the offending field(s).")


class IngestResult(BaseModel):
    accepted: int = Field(description="Events the broker acknowledged.")
    rejected: list[RejectedItem]


_EXAMPLE = {
    "events": [
        {
            "event_id": "6f1c2a8e-8a7e-4d1b-9a53-2f1d6c1e0b11",
            "type": "message",
            "occurred_at": "2026-11-22T09:30:00+08:00",
            "user_id": "u1001",
            "client": "mobile",
            "group_id": "g42",
        },
        {
            "event_id": "0d5e9b7c-1f2a-4c3b-8d4e-5f6a7b8c9d0e",
            "type": "login",
            "occurred_at": "2026-11-22T09:00:00+08:00",
            "user_id": "u1001",
            "client": "pc",
            "session_id": "s-77",
        },
    ]
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": IngestResult, "description": "At least one event accepted"},
    400: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Malformed body"},
    401: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "Missing or unknown key; user token expired, malformed or wrongly signed",
    },
    403: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "Key lacks the role (or a user token on the import endpoint)",
    },
    413: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "Over 1 MiB (after gunzip) or over 500 events",
    },
    415: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": "Not JSON"},
    422: {"model": IngestResult, "description": "No event accepted; `rejected` says why"},
    429: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "Over the key's (or the token's user's) rate; see Retry-After",
    },
    503: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "Broker did not confirm; retry after Retry-After with the same event_id",
    },
}
_BODY = {
    **BEARER_SECURITY,
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Event"},
                        {"$ref": "#/components/schemas/EventBatch"},
                    ]
                },
                "example": _EXAMPLE,
            }
        },
    },
}


async def _ingest(request: Request, speaker: Speaker, max_age: timedelta | None) -> ORJSONResponse:
    received = datetime.now(UTC)
    payload = await read_json_body(request)
    state = request.app.state
    limiter = state.user_rate_limiter if speaker.user_id is not None else state.rate_limiter
    screening = await accept_events(payload, speaker, received, max_age, limiter, state.publisher)
    body = {
        "accepted": len(screening.accepted),
        "rejected": [r.as_dict() for r in screening.rejected],
    }
    return ORJSONResponse(body, status_code=202 if screening.accepted else 422)


@router.post(
    "/events",
    status_code=202,
    summary="Submit one event or a batch of up to 500",
    description="Live events, `occurred_at` within [received − 35 days, received + 5 minutes]. "
    "Valid events of a batch are accepted even if others are not. Nothing is acknowledged "
    "before the broker acknowledged it. `Content-Encoding: gzip` accepted (1 MiB decompressed)."
    "\n\nWho may post what (SPEC §14): a **user token** (client apps) posts the client types "
    "(message, login, logout, checkin, friend_added, group_join, group_leave) and "
    "group_dissolved, each with `user_id` = the token's `sub` (else `user_mismatch`); an "
    "`ingest` key (a server relay) posts the client types; a `platform` key posts every type "
    "(points, bonus_card, group_created, group_dissolved and group_owner_changed need it); a "
    "key narrowed to listed types posts only those. Others are rejected per item with "
    "`type_not_allowed`.",
    responses=_RESPONSES,
    openapi_extra=_BODY,
    response_class=ORJSONResponse,
)
async def post_events(request: Request) -> ORJSONResponse:
    caller = await authenticate(request)
    speaker: Speaker
    if isinstance(caller, UserCaller):
        speaker = user_speaker(caller.sub, request.app.state.settings.user_rate_per_s)
    elif caller.has(Role.INGEST) or caller.has(Role.PLATFORM):
        speaker = key_speaker(caller, importing=False)
    else:
        raise Forbidden(
            "this key needs the 'ingest' (relay) or 'platform' role", code="missing_role"
        )
    return await _ingest(request, speaker, max_age=request.app.state.max_age)


@router.post(
    "/events:import",
    status_code=202,
    summary="Historical backfill: events of any age",
    description="Same contract as `POST /v1/events` for keys with the `importer` role; events "
    "may be of any age (not more than 5 minutes in the future), of every type (a key narrowed "
    "to listed types, only those). User tokens are refused (403).",
    responses=_RESPONSES,
    openapi_extra=_BODY,
    response_class=ORJSONResponse,
)
async def import_events(request: Request) -> ORJSONResponse:
    principal = await authorize(request, Role.IMPORTER)
    return await _ingest(request, key_speaker(principal, importing=True), max_age=None)
