"""Report on a campaign (SPEC §12): per rule and period, its people, grants, units and money,
budget use, notices, the funnel and the holdout's uplift. Folds the counts kept since the last
report (store/report.py `compact`), reads in one read-only snapshot, then asks notify for the
notices (never an HTTP call inside the transaction)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.rewards.domain import report
from services.rewards.domain.campaign import CampaignDefinition
from services.rewards.domain.holdout import uplift_of
from services.rewards.notices import period_notices
from services.rewards.store import campaigns, holdouts
from services.rewards.store import report as counts
from shared.auth import Principal
from shared.errors import ValidationFailed
from shared.failures import is_transient
from shared.ownership import check_team

log = logging.getLogger(__name__)
REPORT_WORK_MEM = "256MB"
NoticeCounts = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class ReportRequest:
    campaign_id: str
    first: date | None = None
    last: date | None = None
    metric: str = report.DEFAULT_UPLIFT_METRIC


def _definition(doc: dict[str, Any]) -> tuple[int, CampaignDefinition]:
    """The live version, else the newest."""
    live = doc["live_version"]
    v = next((x for x in doc["versions"] if x["version"] == live), doc["versions"][-1])
    return int(v["version"]), CampaignDefinition.model_validate(v["definition"])


def period_labels(first: date, last: date) -> list[str]:
    """Every day, ISO week, month and year label touching [first, last], and `campaign`."""
    labels: set[str] = {"campaign"}
    d = first
    while d <= last:
        year, week, _ = d.isocalendar()
        labels |= {d.isoformat(), f"{year}-W{week:02d}", d.strftime("%Y-%m"), str(d.year)}
        d += timedelta(days=1)
    return sorted(labels)


async def campaign_report(
    sessions: async_sessionmaker[AsyncSession],
    request: ReportRequest,
    reader: Principal,
    tz: ZoneInfo,
    now: datetime,
    notices: NoticeCounts | None,
) -> dict[str, Any]:
    """The report as a document; 404 for an unknown campaign, 403 `other_team` for another
    team's, 422 for an empty range."""
    today = now.astimezone(tz).date()
    async with sessions() as session, session.begin():
        doc = await campaigns.get(session, request.campaign_id)
        check_team(reader, doc["team"], f"campaign {request.campaign_id}")
        # The count deltas written since the last report, folded before the snapshot is taken
        # (READ COMMITTED: it waits on no writer).
        await counts.compact(session, request.campaign_id)
    async with sessions() as session, session.begin():
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        # Grouping a million grants or users hashes in memory rather than spilling to disk.
        await session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        version, d = _definition(doc)
        window = (
            d.starts_at.astimezone(tz).date(),
            (d.ends_at - timedelta(microseconds=1)).astimezone(tz).date(),
        )
        first = max(request.first or window[0], window[0])
        last = min(request.last or window[1], window[1])
        if request.first and request.last and request.first > request.last:
            raise ValidationFailed("from: must not be after to")
        labels = period_labels(first, last) if first <= last else []
        rank_rules = [(r.id, r.period) for r in d.rules if r.kind == "rank"]
        cid = request.campaign_id
        ledger = await counts.ledger_counts(session, cid, labels, today, tz)
        entries = await counts.draw_entrants(session, cid, labels)
        ranked = await counts.rank_people(session, cid, labels, rank_rules)
        months = (first.replace(day=1), last.replace(day=1))
        kept = await counts.covers_every_period(session, cid, labels)
        totals = await counts.people_totals(
            session, cid, labels, rank_rules, months, request.metric, kept
        )
        budgets = await counts.budgets(session, cid)
        seed = await holdouts.published(session, cid)
    grants, units, budget_use = report.split_ledger(ledger)
    people = report.people(grants, entries, ranked)
    steps: dict[str, int | None] = {
        "reached": totals.reached,
        "entered": totals.entered,
        "won": totals.won,
        "fulfilled": totals.fulfilled,
        "active_next_period": totals.active_next_period,
    }
    figures = report.per_period(grants, units, people, d.unit_prices)
    notice_doc = await notices(request.campaign_id) if notices is not None else None
    steps["told"] = None if notice_doc is None else int(notice_doc.get("told_users") or 0)
    if notice_doc is not None:
        by_period = period_notices(notice_doc)
        if by_period is not None:
            unattributed = int(notice_doc.get("unattributed") or 0)
            figures = report.with_notices(figures, by_period, unattributed)
        # The campaign's notices stay whole; each period's are in its row.
        notice_doc = {k: v for k, v in notice_doc.items() if k != "periods"}
    kinds = sorted({u.kind for u in units})
    return {
        "campaign_id": request.campaign_id,
        "name": d.name,
        "version": version,
        "state": doc["state"],
        "from": first,
        "to": last,
        "generated_at": now,
        "unit_prices": d.unit_prices,
        "holdout": {"percent": d.holdout_percent, **(seed or {})},
        "periods": [asdict(f) for f in figures],
        "totals": report.totals(figures, units, d.unit_prices),
        "budgets": budgets,
        "budget_use": budget_use,
        "notices": notice_doc,
        "funnel": report.funnel(steps),
        "uplift": report.uplift_section(request.metric, uplift_of(totals.treated, totals.held_out)),
        "kinds": kinds,
    }


async def compact_pending(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Fold every campaign's report count deltas (each campaign in a transaction of its own),
    so they do not pile up between reports and the first report after a busy day stays fast.
    The settler calls it on its timer; a campaign another replica is folding is skipped; a
    campaign that fails is logged and left for the next pass. Returns the campaigns folded."""
    async with sessions() as session:
        pending = await counts.pending_campaigns(session)
    folded = 0
    for campaign_id in pending:
        try:
            async with sessions() as session, session.begin():
                await counts.compact(session, campaign_id)
            folded += 1
        except Exception as exc:  # one campaign's failure does not starve the others
            if is_transient(exc):
                raise
            log.exception("report counts not folded", extra={"campaign_id": campaign_id})
    return folded


def report_csv(doc: dict[str, Any]) -> str:
    return report.to_csv([report.PeriodFigures(**p) for p in doc["periods"]], doc["kinds"])
