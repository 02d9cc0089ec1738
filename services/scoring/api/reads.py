"""Read API: user days and months, group months, leaderboards (SPEC §4)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from services.scoring.api.schemas import (
    ActiveUserPage,
    GroupMonth,
    Leaderboard,
    MemberPage,
    UserDay,
    UserMonth,
    WeightsBody,
)
from services.scoring.domain.periods import end_of_month, month_label, parse_month
from services.scoring.domain.vitality import Weights
from services.scoring.store import queries
from services.scoring.store.changelog import derived_day_points
from shared.api_auth import RequireViewer
from shared.api_deps import SessionDep, TimeZone
from shared.contract import PROVINCES
from shared.errors import NotFound, ValidationFailed
from shared.http import problems, reject_unknown_query_params
from shared.pagination import decode_cursor, encode_cursor, is_int, single_text
from shared.period_params import period_param

router = APIRouter(
    prefix="/v1",
    tags=["metrics"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)

ID_PATTERN = r"^[A-Za-z0-9_.:@+\-]{1,64}$"
UserId = Annotated[str, Path(pattern=ID_PATTERN, description="The user's id")]
GroupId = Annotated[str, Path(pattern=ID_PATTERN, description="The group's id")]
MonthText = Annotated[str, Path(pattern=r"^\d{4}-\d{2}$", examples=["2026-11"])]
# Text, not `date`: a `date` parameter also takes a Unix timestamp ("0" is 1970-01-01).
DayText = Annotated[str, Path(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-11-03"])]


def _month(text: str) -> date:
    try:
        return parse_month(text)
    except ValueError as exc:
        raise ValidationFailed(
            f"month: {exc}", extra={"errors": [{"field": "month", "message": str(exc)}]}
        ) from None


async def _weights(
    session: SessionDep,
    profile: str,
    w_growth: float | None,
    w_activity: float | None,
    w_bonus: float | None,
) -> tuple[str, Weights]:
    explicit = [w_growth, w_activity, w_bonus]
    if any(w is not None for w in explicit):
        if any(w is None for w in explicit):
            raise ValidationFailed("give all of w_growth, w_activity and w_bonus, or none")
        assert w_growth is not None and w_activity is not None and w_bonus is not None
        return "custom", Weights(w_growth, w_activity, w_bonus)
    found = await queries.profile(session, profile)
    if found is None:
        raise NotFound(f"no weight profile named '{profile}'")
    return profile, found


Weight = Annotated[float | None, Query(ge=-1000, le=1000, allow_inf_nan=False)]
ProfileName = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


@router.get(
    "/users/{user_id}/days/{day}",
    response_model=UserDay,
    summary="A user's metrics for one local day",
)
async def get_user_day(
    user_id: UserId, day: DayText, session: SessionDep, _: RequireViewer
) -> dict[str, Any]:
    row = await queries.user_day(session, user_id, period_param("day", day))
    return {"user_id": user_id, "day": day, **row, **derived_day_points(row)}


@router.get(
    "/users/{user_id}/months/{month}",
    response_model=UserMonth,
    summary="A user's metrics for one local month (daily caps applied per day)",
)
async def get_user_month(
    user_id: UserId, month: MonthText, session: SessionDep, _: RequireViewer
) -> dict[str, Any]:
    row = await queries.user_month(session, user_id, _month(month))
    return {"user_id": user_id, "month": month, **row, "active": row["messages"] >= 1}


@router.get(
    "/groups/{group_id}/months/{month}",
    response_model=GroupMonth,
    summary="A group's month: components, weights, vitality, rank, top members",
)
async def get_group_month(
    group_id: GroupId,
    month: MonthText,
    session: SessionDep,
    tz: TimeZone,
    _: RequireViewer,
    profile: ProfileName = "default",
    w_growth: Weight = None,
    w_activity: Weight = None,
    w_bonus: Weight = None,
    top: Annotated[int, Query(ge=0, le=100)] = 10,
) -> dict[str, Any]:
    first_day = _month(month)
    name, w = await _weights(session, profile, w_growth, w_activity, w_bonus)
    row = await queries.group_month(session, group_id, first_day, w, tz, top)
    if row is None:
        raise NotFound(f"no group '{group_id}'")
    return {
        **row,
        "month": month,
        "dissolved": row["dissolved_at"] is not None,
        "weights": _weights_body(w),
        "profile": name,
    }


@router.get(
    "/leaderboards/{month}/{province}",
    response_model=Leaderboard,
    summary="Groups of a province by vitality (then active members, then id)",
)
async def get_leaderboard(
    month: MonthText,
    province: Annotated[str, Path(pattern="^(" + "|".join(PROVINCES) + ")$")],
    session: SessionDep,
    tz: TimeZone,
    _: RequireViewer,
    profile: ProfileName = "default",
    w_growth: Weight = None,
    w_activity: Weight = None,
    w_bonus: Weight = None,
    min_members: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    min_active_ratio: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)] = 0.0,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    first_day = _month(month)
    after = _decode_cursor(cursor) if cursor else None
    _name, w = await _weights(session, profile, w_growth, w_activity, w_bonus)
    items = await queries.leaderboard(
        session,
        first_day,
        province,
        w,
        tz,
        min_members=min_members,
        min_active_ratio=min_active_ratio,
        limit=limit,
        after=after,
    )
    next_cursor = None
    if len(items) == limit:
        last = items[-1]
        next_cursor = _encode_cursor(
            queries.BoardCursor(
                float(last["vitality"]), int(last["active_members"]), last["group_id"], last["rank"]
            )
        )
    return {
        "month": month_label(first_day),
        "province": province,
        "weights": _weights_body(w),
        "items": items,
        "next_cursor": next_cursor,
    }


def _weights_body(w: Weights) -> WeightsBody:
    return WeightsBody(w_growth=w.growth, w_activity=w.activity, w_bonus=w.bonus)


def _encode_cursor(c: queries.BoardCursor) -> str:
    return encode_cursor([c.vitality, c.active_members, c.group_id, c.rank])


def _decode_cursor(text: str) -> queries.BoardCursor:
    v, a, g, r = decode_cursor(
        text,
        lambda k: (
            len(k) == 4
            and (is_int(k[0]) or isinstance(k[0], float))
            # active_members is an int4 column; a rank is a count of rows before this one
            and is_int(k[1])
            and 0 <= k[1] < 2**31
            and isinstance(k[2], str)
            and is_int(k[3])
            and 0 <= k[3] < 2**31
        ),
    )
    return queries.BoardCursor(float(v), a, g, r)


def _after_id(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    value: str = decode_cursor(cursor, single_text)[0]
    return value


@router.get(
    "/groups/{group_id}/months/{month}/members",
    response_model=MemberPage,
    summary="A group's members as of the month's end, paged by user id",
)
async def get_group_members(
    group_id: GroupId,
    month: MonthText,
    session: SessionDep,
    tz: TimeZone,
    _: RequireViewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    items = await queries.group_members(
        session, group_id, end_of_month(_month(month), tz), limit, _after_id(cursor)
    )
    next_cursor = encode_cursor([items[-1]]) if len(items) == limit else None
    return {"group_id": group_id, "month": month, "items": items, "next_cursor": next_cursor}


@router.get(
    "/months/{month}/active-users",
    response_model=ActiveUserPage,
    summary="Users whose month activity points are at least min_activity_points",
)
async def get_active_users(
    month: MonthText,
    session: SessionDep,
    _: RequireViewer,
    min_activity_points: Annotated[int, Query(ge=0, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    items = await queries.users_with_activity(
        session, _month(month), min_activity_points, limit, _after_id(cursor)
    )
    next_cursor = encode_cursor([items[-1]["user_id"]]) if len(items) == limit else None
    return {"month": month, "items": items, "next_cursor": next_cursor}
