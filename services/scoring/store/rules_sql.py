"""The domain's rules where SQL must compute them too, rendered from the domain's constants.

Each function here has a Python twin in services/scoring/domain/; the integration test
tests/integration/test_scoring_rules_sql.py evaluates both on the same values on PostgreSQL and
requires equal results, so a rule changed on one side only fails there. Arguments name SQL
expressions (columns) and are trusted: they come from this package, never from a request.
"""

from __future__ import annotations

from services.scoring.domain.points import (
    ACTIVE_MIN_MESSAGES,
    MESSAGE_POINTS_CAP,
    MOBILE_SECONDS_PER_POINT,
    ONLINE_POINTS_CAP,
    PC_SECONDS_PER_POINT,
)
from services.scoring.domain.vitality import MEMBER_COMPONENTS, WEIGHTED_COMPONENTS, Weights


def online_points_sql(pc: str = "online_seconds_pc", mobile: str = "online_seconds_mobile") -> str:
    """domain.points.online_points; `pc` and `mobile` are integer seconds (integer division)."""
    return (
        f"LEAST({ONLINE_POINTS_CAP}, {pc} / {PC_SECONDS_PER_POINT}"
        f" + {mobile} / {MOBILE_SECONDS_PER_POINT})"
    )


def message_points_sql(messages: str = "messages") -> str:
    """domain.points.message_points."""
    return f"LEAST({messages}, {MESSAGE_POINTS_CAP})"


def is_active_sql(messages: str = "messages") -> str:
    """domain.points.is_active."""
    return f"{messages} >= {ACTIVE_MIN_MESSAGES}"


def weight_params(w: Weights) -> dict[str, float]:
    """The query parameters `vitality_sql` and `member_contribution_sql` read the weights from."""
    return {"w_growth": w.growth, "w_activity": w.activity, "w_bonus": w.bonus}


def vitality_sql(column: str = "gm.{}") -> str:
    """domain.vitality.vitality over `column` (a template naming each component), weighted by
    the `weight_params` parameters."""
    return _weighted_sum(WEIGHTED_COMPONENTS, column)


def member_contribution_sql(column: str = "um.{}") -> str:
    """domain.vitality.member_contribution over `column`, weighted like `vitality_sql`."""
    return _weighted_sum(MEMBER_COMPONENTS, column)


def _weighted_sum(terms: tuple[tuple[str, str], ...], column: str) -> str:
    # Parameters are cast: asyncpg would otherwise type them after the integer columns and
    # truncate fractional weights.
    return (
        "("
        + " + ".join(
            f"CAST(:w_{weight} AS float8) * {column.format(component)}"
            for weight, component in terms
        )
        + ")"
    )


def member_at_sql(span: str, at: str) -> str:
    """domain.membership.Span.contains: the span (an alias of membership_spans) holds `at`."""
    return f"({span}.joined_at < {at} AND ({span}.left_at IS NULL OR {span}.left_at >= {at}))"
