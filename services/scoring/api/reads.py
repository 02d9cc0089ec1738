"""Read API: user days and months, group months, leaderboards (SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.api.schemas import (
    ActiveUserPage,
    GroupMonth,
    Leaderboard,
    MemberPage,
    Timeline,
    UserDay,
    UserMonth,
    WeightsBody,
)
from services.scoring.domain.anomalies import AnomalyThresholds
from services.scoring.domain.periods import local_day
from services.scoring.domain.vitality import DEFAULT_PROFILE, Weights
from services.scoring.store import profiles, queries
from services.scoring.usecases.anomalies import group_month_flags_of, user_day_flags_of
from services.scoring.usecases.group_month import read_group_members, read_group_month
from services.scoring.usecases.user_reads import (
    default_range,
    read_timeline,
    read_user_day,
    read_user_month,
)
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


def _thresholds(request: Request) -> AnomalyThresholds:
    thresholds: AnomalyThresholds = request.app.state.anomaly_thresholds
    return thresholds


Thresholds = Annotated[AnomalyThresholds, Depends(_thresholds)]
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
    summary="A user's metrics for one local day (zeros on a quiet day; 404 for a user never seen)",
)
async def get_user_day(
    user_id: UserIdPath, day: DayText, session: SessionDep, t: Thresholds, _: RequireViewer
) -> dict[str, Any]:
    local = period_param("day", day)
    view = await read_user_day(session, user_id, local)
    flags = await user_day_flags_of(session, [(user_id, local)], t)
    return {**view, "day": day, "flags": flags.get((user_id, local), [])}


@router.get(
    "/users/{user_id}/months/{month}",
    response_model=UserMonth,
    summary="A user's metrics for one local month (daily caps applied per day; 404 for a user "
    "never seen)",
)
async def get_user_month(
    user_id: UserIdPath, month: MonthText, session: SessionDep, _: RequireViewer
) -> dict[str, Any]:
    return {**await read_user_month(session, user_id, period_param("month", month)), "month": month}


TIMELINE_DESCRIPTION = """The user's days with metric effects, newest first (SPEC §11, care):
one item per local day on which the events scoring applied changed a counter, with what they
added up to —

- `messages` (pc and mobile; `messages_mobile` the mobile share), `messages_sms`;
- `online_seconds_pc`, `online_seconds_mobile`: sessions' time, split across local days;
- `online_points` (min(4, pc seconds / 900 + mobile seconds / 300)), `message_points`
  (min(messages, 20)), `activity_points` (their sum);
- `points_delta`, `friends_added`, `checkins`, `logins`;
- `month_active`: whether the day's month is active (≥ 1 pc/mobile message in it).

The page carries the user's `first_seen` (local day of their earliest event) and the range.
`from` / `to` (local days, inclusive) default to the last 35 days; 422 when `from` is after
`to`; 404 `user_not_found` when scoring never applied an event of the user."""


async def _day_page(
    limit: Annotated[int, Query(ge=1, le=500, description="Days per page.")] = 100,
    cursor: Cursor = None,
) -> PageQuery:
    return PageQuery(limit, cursor)


DayQuery = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-11-03"])]


@router.get(
    "/users/{user_id}/timeline",
    response_model=Timeline,
    summary="A user's days with metric effects, newest first (care)",
    description=TIMELINE_DESCRIPTION,
)
async def get_timeline(
    user_id: UserIdPath,
    session: SessionDep,
    tz: TimeZone,
    page: Annotated[PageQuery, Depends(_day_page)],
    _: RequireViewer,
    from_text: Annotated[DayQuery, Query(alias="from")] = None,
    to_text: Annotated[DayQuery, Query(alias="to")] = None,
) -> dict[str, Any]:
    first, last = default_range(local_day(datetime.now(tz), tz))
    if from_text is not None:
        first = period_param("from", from_text)
    if to_text is not None:
        last = period_param("to", to_text)
    if first > last:
        raise ValidationFailed(
            "from: after `to`", extra={"errors": [{"field": "from", "message": "after `to`"}]}
        )
    after = page.after(_day_key)
    before = None if after is None else date.fromisoformat(after[0])
    first_seen, items = await read_timeline(session, user_id, first, last, page.limit, before)
    return {
        "user_id": user_id,
        "first_seen": first_seen,
        "from_day": first,
        "to_day": last,
        "items": items,
        "next_cursor": page.next_cursor(items, lambda d: [d["day"].isoformat()]),
    }


def _day_key(key: list[Any]) -> bool:
    """A timeline cursor's key: [the last day shown, YYYY-MM-DD]."""
    if not single_text(key) or len(key[0]) != 10:
        return False
    try:
        period_param("cursor", key[0])
    except ValidationFailed:
        return False
    return True


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
    t: Thresholds,
    _: RequireViewer,
    top: Annotated[int, Query(ge=0, le=100)] = 10,
) -> dict[str, Any]:
    first_day = period_param("month", month)
    weights = await weights_query.resolve(session)
    view = await read_group_month(session, group_id, first_day, weights.weights, tz, top)
    flags = await group_month_flags_of(session, [(group_id, first_day)], tz, t)
    return {
        **view,
        "month": month,
        "weights": weights.body(),
        "profile": weights.profile,
        "flags": flags.get((group_id, first_day), []),
    }


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
    t: Thresholds,
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
    flags = await group_month_flags_of(session, [(i["group_id"], first_day) for i in items], tz, t)
    for item in items:
        item["flags"] = flags.get((item["group_id"], first_day), [])
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
    first_day = period_param("month", month)
    items = await read_group_members(session, group_id, first_day, tz, page.limit, _after_id(page))
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
