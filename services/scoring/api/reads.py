"""Read API: user days and months, group months, leaderboards (SPEC §4)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.api.schemas import (
    ActiveUserPage,
    GroupMonth,
    Leaderboard,
    MemberPage,
    UserDay,
    UserMonth,
    WeightsBody,
)
from services.scoring.domain.periods import end_of_month
from services.scoring.domain.points import day_points, is_active
from services.scoring.domain.vitality import DEFAULT_PROFILE, Weights
from services.scoring.store import profiles, queries
from services.scoring.usecases.group_month import read_group_month
from shared.api_auth import RequireViewer
from shared.api_deps import GroupIdPath, SessionDep, TimeZone, UserIdPath
from shared.contract import PROVINCES
from shared.errors import NotFound, ValidationFailed
from shared.http import problems, reject_unknown_query_params
from shared.pagination import PageQuery, is_int, single_text
from shared.period_params import period_param

router = APIRouter(
    prefix="/v1",
    tags=["metrics"],
    dependencies=[Depends(reject_unknown_query_params)],
    responses=problems(400, 401, 403, 404, 422),
)

MonthText = Annotated[str, Path(pattern=r"^\d{4}-\d{2}$", examples=["2026-11"])]
# Text, not `date`: a `date` parameter also takes a Unix timestamp ("0" is 1970-01-01).
DayText = Annotated[str, Path(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-11-03"])]
Province = Annotated[str, Path(pattern="^(" + "|".join(PROVINCES) + ")$")]
Weight = Annotated[float | None, Query(ge=-1000, le=1000, allow_inf_nan=False)]
ProfileName = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]


# Pages of shared.pagination, with this API's published sizes: leaderboards 20 by default (up
# to 500), id lists 500 (up to 1,000: notify's segments read them in pages of 1,000).
async def _board_page(
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 20,
    cursor: Cursor = None,
) -> PageQuery:
    return PageQuery(limit, cursor)


async def _id_page(
    limit: Annotated[int, Query(ge=1, le=1000, description="Items per page.")] = 500,
    cursor: Cursor = None,
) -> PageQuery:
    return PageQuery(limit, cursor)


BoardPageParams = Annotated[PageQuery, Depends(_board_page)]
IdPageParams = Annotated[PageQuery, Depends(_id_page)]


@dataclass(frozen=True, slots=True)
class ChosenWeights:
    profile: str  # "custom" for weights given in the query
    weights: Weights

    def body(self) -> WeightsBody:
        w = self.weights
        return WeightsBody(w_growth=w.growth, w_activity=w.activity, w_bonus=w.bonus)


@dataclass(frozen=True, slots=True)
class WeightsQuery:
    """The weights a read asks for: all three given, or else a profile's."""

    profile: str
    w_growth: float | None
    w_activity: float | None
    w_bonus: float | None

    async def resolve(self, session: AsyncSession) -> ChosenWeights:
        """422 for some weights but not all; 404 for a profile that does not exist."""
        given = (self.w_growth, self.w_activity, self.w_bonus)
        if any(w is not None for w in given):
            if self.w_growth is None or self.w_activity is None or self.w_bonus is None:
                raise ValidationFailed("give all of w_growth, w_activity and w_bonus, or none")
            return ChosenWeights("custom", Weights(self.w_growth, self.w_activity, self.w_bonus))
        found = await profiles.weights_of(session, self.profile)
        if found is None:
            raise NotFound(f"no weight profile named '{self.profile}'")
        return ChosenWeights(self.profile, found)


async def _weights_query(
    profile: ProfileName = DEFAULT_PROFILE,
    w_growth: Weight = None,
    w_activity: Weight = None,
    w_bonus: Weight = None,
) -> WeightsQuery:
    return WeightsQuery(profile, w_growth, w_activity, w_bonus)


WeightsParams = Annotated[WeightsQuery, Depends(_weights_query)]


@router.get(
    "/users/{user_id}/days/{day}",
    response_model=UserDay,
    summary="A user's metrics for one local day",
)
async def get_user_day(
    user_id: UserIdPath, day: DayText, session: SessionDep, _: RequireViewer
) -> dict[str, Any]:
    row = await queries.user_day(session, user_id, period_param("day", day))
    points = day_points(row["messages"], row["online_seconds_pc"], row["online_seconds_mobile"])
    return {"user_id": user_id, "day": day, **row, **asdict(points)}


@router.get(
    "/users/{user_id}/months/{month}",
    response_model=UserMonth,
    summary="A user's metrics for one local month (daily caps applied per day)",
)
async def get_user_month(
    user_id: UserIdPath, month: MonthText, session: SessionDep, _: RequireViewer
) -> dict[str, Any]:
    row = await queries.user_month(session, user_id, period_param("month", month))
    return {"user_id": user_id, "month": month, **row, "active": is_active(row["messages"])}


@router.get(
    "/groups/{group_id}/months/{month}",
    response_model=GroupMonth,
    summary="A group's month: components, weights, vitality, rank, top members",
)
async def get_group_month(
    group_id: GroupIdPath,
    month: MonthText,
    session: SessionDep,
    tz: TimeZone,
    weights_query: WeightsParams,
    _: RequireViewer,
    top: Annotated[int, Query(ge=0, le=100)] = 10,
) -> dict[str, Any]:
    first_day = period_param("month", month)
    weights = await weights_query.resolve(session)
    view = await read_group_month(session, group_id, first_day, weights.weights, tz, top)
    return {**view, "month": month, "weights": weights.body(), "profile": weights.profile}


@router.get(
    "/leaderboards/{month}/{province}",
    response_model=Leaderboard,
    summary="Groups of a province by vitality (then active members, then id)",
)
async def get_leaderboard(
    month: MonthText,
    province: Province,
    session: SessionDep,
    tz: TimeZone,
    weights_query: WeightsParams,
    page: BoardPageParams,
    _: RequireViewer,
    min_members: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    min_active_ratio: Annotated[float, Query(ge=0, le=1, allow_inf_nan=False)] = 0.0,
) -> dict[str, Any]:
    first_day = period_param("month", month)
    after = page.after(_board_key)
    weights = await weights_query.resolve(session)
    items = await queries.leaderboard(
        session,
        first_day,
        province,
        weights.weights,
        tz,
        min_members=min_members,
        min_active_ratio=min_active_ratio,
        limit=page.limit,
        after=None if after is None else queries.BoardCursor(float(after[0]), *after[1:]),
    )
    return {
        "month": month,
        "province": province,
        "weights": weights.body(),
        "items": items,
        "next_cursor": page.next_cursor(
            items,
            lambda r: [float(r["vitality"]), int(r["active_members"]), r["group_id"], r["rank"]],
        ),
    }


def _board_key(key: list[Any]) -> bool:
    """A leaderboard cursor's key: [vitality, active_members, group_id, rank]."""
    return (
        len(key) == 4
        and (is_int(key[0]) or isinstance(key[0], float))
        # active_members is an int4 column; a rank is a count of rows before this one
        and is_int(key[1])
        and 0 <= key[1] < 2**31
        and isinstance(key[2], str)
        and is_int(key[3])
        and 0 <= key[3] < 2**31
    )


def _after_id(page: PageQuery) -> str | None:
    key = page.after(single_text)
    return None if key is None else str(key[0])


@router.get(
    "/groups/{group_id}/months/{month}/members",
    response_model=MemberPage,
    summary="A group's members as of the month's end, paged by user id",
)
async def get_group_members(
    group_id: GroupIdPath,
    month: MonthText,
    session: SessionDep,
    tz: TimeZone,
    page: IdPageParams,
    _: RequireViewer,
) -> dict[str, Any]:
    month_end = end_of_month(period_param("month", month), tz)
    items = await queries.group_members(session, group_id, month_end, page.limit, _after_id(page))
    next_cursor = page.next_cursor(items, lambda user_id: [user_id])
    return {"group_id": group_id, "month": month, "items": items, "next_cursor": next_cursor}


@router.get(
    "/months/{month}/active-users",
    response_model=ActiveUserPage,
    summary="Users whose month activity points are at least min_activity_points",
)
async def get_active_users(
    month: MonthText,
    session: SessionDep,
    page: IdPageParams,
    _: RequireViewer,
    min_activity_points: Annotated[int, Query(ge=0, le=1_000_000)] = 1,
) -> dict[str, Any]:
    items = await queries.users_with_activity(
        session, period_param("month", month), min_activity_points, page.limit, _after_id(page)
    )
    next_cursor = page.next_cursor(items, lambda user: [user["user_id"]])
    return {"month": month, "items": items, "next_cursor": next_cursor}
