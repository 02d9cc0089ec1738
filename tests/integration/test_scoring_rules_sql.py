"""Where SQL computes a SPEC §4 rule too, it computes the same thing as the domain's Python:
each expression of services/scoring/store/rules_sql.py is evaluated on PostgreSQL over a grid
of values (boundaries included, in the columns' own types) and compared with its Python twin."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engage.stack import Stack
from services.scoring.domain.membership import Span
from services.scoring.domain.points import is_active, message_points, online_points
from services.scoring.domain.vitality import Weights, member_contribution, vitality
from services.scoring.store.rules_sql import (
    is_active_sql,
    member_at_sql,
    member_contribution_sql,
    message_points_sql,
    online_points_sql,
    vitality_sql,
    weight_params,
)
from shared.db import make_engine

pytestmark = pytest.mark.asyncio

# Around every threshold of the daily caps: a point on PC (900 s), on mobile (300 s), the cap.
SECONDS = [0, 1, 299, 300, 301, 599, 600, 899, 900, 901, 1199, 1200, 1799, 1800, 2699, 2700]
SECONDS += [3599, 3600, 3601, 7200, 86_400]
MESSAGES = [0, 1, 2, 19, 20, 21, 100, 2**31 - 1]
COMPONENTS = [-7, -1, 0, 1, 3, 10, 1_000, 123_456_789]
WEIGHTS = [
    Weights(),
    Weights(growth=0, activity=0, bonus=1),
    Weights(growth=0.5, activity=2, bonus=-1.25),
    Weights(growth=1 / 3, activity=0.1, bonus=1000),
    Weights(growth=-1000, activity=-0.001, bonus=0),
]


@pytest.fixture(scope="module")
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    assert stack.database_url
    engine = make_engine(stack.database_url, "public", pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


async def evaluate(
    engine: AsyncEngine, expression: str, columns: dict[str, tuple[str, list[Any]]], **params: Any
) -> list[Any]:
    """`expression` over the rows x(<columns>) = the columns' values zipped, in order."""
    names = list(columns)
    arrays = ", ".join(f"CAST(:{n} AS {columns[n][0]}[])" for n in names)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                f"SELECT {expression} FROM unnest({arrays}) WITH ORDINALITY "
                f"AS x({', '.join(names)}, i) ORDER BY i"
            ),
            {**{n: columns[n][1] for n in names}, **params},
        )
        return [r[0] for r in rows]


async def test_online_points_sql_is_online_points(engine: AsyncEngine) -> None:
    pairs = list(itertools.product(SECONDS, SECONDS))
    pc, mobile = [p for p, _ in pairs], [m for _, m in pairs]
    # user_day's online seconds are int columns: the division is an integer one
    got = await evaluate(
        engine,
        online_points_sql("x.pc", "x.mobile"),
        {"pc": ("int", pc), "mobile": ("int", mobile)},
    )
    assert got == [online_points(p, m) for p, m in pairs]


async def test_message_points_and_activity_sql_are_their_python_rules(engine: AsyncEngine) -> None:
    got = await evaluate(engine, message_points_sql("x.messages"), {"messages": ("int", MESSAGES)})
    assert got == [message_points(m) for m in MESSAGES]
    got = await evaluate(engine, is_active_sql("x.messages"), {"messages": ("int", MESSAGES)})
    assert got == [is_active(m) for m in MESSAGES]


@pytest.mark.parametrize("w", WEIGHTS, ids=str)
async def test_vitality_sql_is_vitality(engine: AsyncEngine, w: Weights) -> None:
    triples = list(itertools.product(COMPONENTS, repeat=3))
    got = await evaluate(
        engine,
        vitality_sql("x.{}"),
        {
            "points_growth": ("bigint", [t[0] for t in triples]),
            "activity_points": ("bigint", [t[1] for t in triples]),
            "bonus_points": ("bigint", [t[2] for t in triples]),
        },
        **weight_params(w),
    )
    assert got == [vitality(g, a, b, w) for g, a, b in triples]


@pytest.mark.parametrize("w", WEIGHTS, ids=str)
async def test_member_contribution_sql_is_member_contribution(
    engine: AsyncEngine, w: Weights
) -> None:
    pairs = list(itertools.product(COMPONENTS, repeat=2))
    got = await evaluate(
        engine,
        member_contribution_sql("x.{}"),
        {
            "points_delta": ("bigint", [p[0] for p in pairs]),
            "activity_points": ("int", [p[1] for p in pairs]),
        },
        **weight_params(w),
    )
    assert got == [member_contribution(d, a, w) for d, a in pairs]


async def test_membership_sql_is_span_contains(engine: AsyncEngine) -> None:
    t = datetime(2026, 11, 1, tzinfo=UTC)
    moments = [t + timedelta(microseconds=k) for k in (-1, 0, 1)] + [t - timedelta(days=9)]
    cases = [
        (Span(joined, left), at)
        for joined in moments
        for left in [None, *moments]
        for at in moments
        if left is None or left >= joined
    ]
    got = await evaluate(
        engine,
        member_at_sql("x", "x.instant"),
        {
            "joined_at": ("timestamptz", [s.joined_at for s, _ in cases]),
            "left_at": ("timestamptz", [s.left_at for s, _ in cases]),
            "instant": ("timestamptz", [at for _, at in cases]),
        },
    )
    assert got == [span.contains(at) for span, at in cases]
