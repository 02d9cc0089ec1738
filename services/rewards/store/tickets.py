"""Tickets from the ledger (SPEC §10): the `ticket` units a campaign's rule granted, which a
lottery of another campaign counts as entries ("My Fetion" members' tickets enter the month's
new-friend draw) once that rule's periods have settled and been released from review; and the
winners a capped threshold already has (SPEC §10 Caps on winners)."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.decisions import GrantDecision
from services.rewards.domain.periods import Period
from services.rewards.domain.rules.registry import kind_of
from shared.db import jsonb


async def ledger_tickets_of(
    session: AsyncSession, campaign: str, rule_id: str
) -> list[tuple[str, str, int]]:
    """(user, period label, ticket units) of the granted grants of `rule_id` in the campaign
    with this id — or, when no campaign has it, every campaign whose live (or newest) version
    is named so."""
    rows = await session.execute(
        text("""
        WITH named AS (
            SELECT c.campaign_id FROM campaigns c WHERE c.campaign_id = :c
            UNION
            SELECT c.campaign_id FROM campaigns c
            JOIN LATERAL (SELECT definition FROM campaign_versions v
                          WHERE v.campaign_id = c.campaign_id
                          ORDER BY (v.version = c.live_version) DESC, v.version DESC LIMIT 1) d
              ON true
            WHERE NOT EXISTS (SELECT 1 FROM campaigns WHERE campaign_id = :c)
              AND d.definition->>'name' = :c)
        SELECT g.user_id, g.period, COALESCE(sum(CAST(i->>'amount' AS bigint)), 0) AS units
        FROM grants g JOIN named n ON n.campaign_id = g.campaign_id
        CROSS JOIN LATERAL jsonb_array_elements(g.items) AS i
        WHERE g.rule_id = :r AND g.status = 'granted' AND i->>'kind' = 'ticket'
        GROUP BY g.user_id, g.period ORDER BY g.user_id, g.period"""),
        {"c": campaign, "r": rule_id},
    )
    return [(r.user_id, r.period, int(r.units)) for r in rows]


async def winners_so_far(
    session: AsyncSession, campaign_id: str, rule_id: str
) -> tuple[dict[str, int], int]:
    """A rule's grants already recorded, per period label and in all (every status: a place
    once taken stays taken, SPEC §10 Caps on winners)."""
    rows = await session.execute(
        text(
            "SELECT period, count(*) AS n FROM grants WHERE campaign_id = :c AND rule_id = :r "
            "GROUP BY period"
        ),
        {"c": campaign_id, "r": rule_id},
    )
    per_period = {r.period: int(r.n) for r in rows}
    return per_period, sum(per_period.values())


async def not_yet_recorded(
    session: AsyncSession, campaign_id: str, decisions: Sequence[GrantDecision]
) -> list[GrantDecision]:
    """The decisions whose key the ledger does not hold yet (a redelivered day re-decides the
    same grant: it must not take a second place under a cap)."""
    if not decisions:
        return []
    rows = await session.execute(
        text(
            "SELECT g.rule_id, g.role, g.user_id, g.period FROM grants g JOIN "
            "unnest(CAST(:r AS text[]), CAST(:o AS text[]), CAST(:u AS text[]), "
            "CAST(:p AS text[])) AS k(r, o, u, p) ON g.campaign_id = :c AND g.rule_id = k.r "
            "AND g.role = k.o AND g.user_id = k.u AND g.period = k.p"
        ),
        {
            "c": campaign_id,
            "r": [d.rule_id for d in decisions],
            "o": [d.role for d in decisions],
            "u": [d.user_id for d in decisions],
            "p": [d.period for d in decisions],
        },
    )
    held = {(r.rule_id, r.role, r.user_id, r.period) for r in rows}
    return [d for d in decisions if d.key not in held]


async def source_waiting(
    session: AsyncSession, campaign: str, rule_id: str, period: Period, tz: ZoneInfo
) -> str | None:
    """Why a draw counting that rule's tickets in `period` must wait, or None: a period of the
    source rule inside `period` has not settled yet, or its grants are held for review."""
    rows = await session.execute(
        text(
            "SELECT c.campaign_id, v.definition FROM campaigns c JOIN campaign_versions v "
            "ON v.campaign_id = c.campaign_id AND v.version = c.live_version "
            "WHERE c.campaign_id = :c OR (v.definition->>'name' = :c AND NOT EXISTS "
            "(SELECT 1 FROM campaigns WHERE campaign_id = :c))"
        ),
        {"c": campaign},
    )
    for r in rows:
        definition = CampaignDefinition.model_validate(jsonb(r.definition))
        rule = next((x for x in definition.rules if x.id == rule_id), None)
        if rule is None:
            continue
        labels = [
            p.label
            for p in definition.window.periods(rule.period, tz)
            if period.first_day <= p.first_day and p.last_day <= period.last_day
        ]
        if not labels:
            continue
        settled = await session.execute(
            text(
                "SELECT period FROM settlements WHERE campaign_id = :c AND rule_id = :r "
                "AND period = ANY(:p)"
            ),
            {"c": r.campaign_id, "r": rule_id, "p": labels},
        )
        missing = sorted(set(labels) - {s.period for s in settled})
        if missing and kind_of(rule).settles_at_period_end:
            return f"{r.campaign_id}/{rule_id}/{missing[0]} has not settled yet"
        held = await session.scalar(
            text(
                "SELECT count(*) FROM grants WHERE campaign_id = :c AND rule_id = :r "
                "AND status = 'held' AND period = ANY(:p)"
            ),
            {"c": r.campaign_id, "r": rule_id, "p": labels},
        )
        if held:
            return f"{r.campaign_id}/{rule_id} has {held} grants held for review"
    return None
