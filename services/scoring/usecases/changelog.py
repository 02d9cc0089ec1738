"""Render the changelog (SPEC §4): the full current values of changed entities, once per key
per relay pass, each checked against its record contract (shared.records) before it leaves."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.scoring.domain.anomalies import AnomalyThresholds
from services.scoring.domain.periods import month_label, parse_month
from services.scoring.domain.points import day_points, is_active
from services.scoring.domain.vitality import DEFAULT_PROFILE, Weights, vitality
from services.scoring.store import changelog, profiles
from services.scoring.usecases.anomalies import (
    count_published,
    group_month_flags_of,
    user_day_flags_of,
)
from shared.metric_fields import GROUP_MONTH_COUNTERS, USER_DAY_COUNTERS, USER_MONTH_COUNTERS
from shared.records import MAX_FRIEND_IDS, METRIC_RECORD, RECORD_VERSION, AnomalyFlag

DEFAULT_THRESHOLDS = AnomalyThresholds()


async def render(
    session: AsyncSession,
    keys: list[str],
    tz: ZoneInfo,
    thresholds: AnomalyThresholds = DEFAULT_THRESHOLDS,
) -> dict[str, bytes]:
    """Full current values of the given changelog keys (ids may contain ':'; periods do not).

    A group's record also carries its attributes and its members as of the end of the month
    (for the current month: as of now), which rewards needs for owners, members and the
    "effective active members" of SPEC §1; its vitality uses the default profile's weights.
    User days and group months carry their anomaly flags (SPEC §14), from stored state.
    """
    days: list[tuple[str, date]] = []
    months: list[tuple[str, date]] = []
    groups: list[tuple[str, date]] = []
    for key in keys:
        head, _, period = key.rpartition(":")
        entity, _, entity_id = head.partition(":")
        if entity == "group":
            groups.append((entity_id, parse_month(period)))
        elif len(period) == 10:
            days.append((entity_id, date.fromisoformat(period)))
        else:
            months.append((entity_id, parse_month(period)))
    out: dict[str, bytes] = {}
    flagged: dict[str, list[AnomalyFlag]] = {}
    day_flags = await user_day_flags_of(session, days, thresholds)
    for r in await changelog.user_day_rows(session, days):
        flags = flagged[changelog.user_day_key(r["user_id"], r["day"])] = day_flags.get(
            (r["user_id"], r["day"]), []
        )
        out[changelog.user_day_key(r["user_id"], r["day"])] = _record(
            {
                "entity": "user",
                "id": r["user_id"],
                "period": r["day"].isoformat(),
                "grain": "day",
                **{c: r[c] for c in USER_DAY_COUNTERS},
                **asdict(
                    day_points(r["messages"], r["online_seconds_pc"], r["online_seconds_mobile"])
                ),
                "flags": [f.model_dump() for f in flags],
                "first_seen": r["first_seen"],
                "friend_ids": list(r["friend_ids"])[:MAX_FRIEND_IDS],
            }
        )
    for r in await changelog.user_month_rows(session, months):
        out[changelog.user_month_key(r["user_id"], r["month"])] = _record(
            {
                "entity": "user",
                "id": r["user_id"],
                "period": month_label(r["month"]),
                "grain": "month",
                **{c: r[c] for c in USER_MONTH_COUNTERS},
                "active": is_active(r["messages"]),
                "lifecycle": r["lifecycle"],
                "loyal": r["loyal"],
                "first_seen": r["first_seen"],
            }
        )
    if groups:
        w = await profiles.weights_of(session, DEFAULT_PROFILE) or Weights()
        month_flags = await group_month_flags_of(session, groups, tz, thresholds)
        for r in await changelog.group_month_rows(session, groups, tz):
            flags = flagged[changelog.group_month_key(r["group_id"], r["month"])] = month_flags.get(
                (r["group_id"], r["month"]), []
            )
            out[changelog.group_month_key(r["group_id"], r["month"])] = _record(
                {
                    "entity": "group",
                    "id": r["group_id"],
                    "period": month_label(r["month"]),
                    "grain": "month",
                    **{c: r[c] for c in GROUP_MONTH_COUNTERS},
                    "vitality": vitality(
                        r["points_growth"], r["activity_points"], r["bonus_points"], w
                    ),
                    "owner_id": r["owner_id"],
                    "name": r["name"],
                    "province": r["province"],
                    "created_at": r["created_at"],
                    "dissolved_at": r["dissolved_at"],
                    "member_ids": r["member_ids"],
                    "flags": [f.model_dump() for f in flags],
                }
            )
    await count_published(session, flagged)
    return out


def _record(doc: dict[str, Any]) -> bytes:
    """A changelog record, checked against its contract (shared.records) before it leaves."""
    doc["v"] = RECORD_VERSION
    METRIC_RECORD.validate_python(doc)
    return orjson.dumps(doc)
