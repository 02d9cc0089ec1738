"""A campaign report (SPEC §12): what the ledger, the draws and the stored metrics say about one
campaign, per rule and period — pure assembly of figures the store has counted.

Definitions (docs/metrics.md, "Campaign report"):
- **entrants** of a rule's period: users who met its eligibility (every subject the rule
  decided for, whatever became of the decision: granted, budget_exhausted, held, excluded,
  revoked, held_out), held tickets in its draw (the frozen entries), or — rank rules — were
  members of an enrolled group that month;
- **winners**: users with a `granted` grant (held-out users would have won; they are counted
  apart);
- **money**: units × the campaign's unit price (SPEC §10), in fen, for granted grants; a kind
  without a price has no money (null), never 0;
- **notices** of a rule's period: its reward notices by status and reason, and the users
  they told (one sent or delivered), from notify's counts per rule and period; a notice notify
  queued before it kept the grant's rule and period is in the campaign's notices only;
- **funnel**: reached (users with stored metrics in a month of the range) → entered → won →
  told (a reward notice sent or delivered, from notify) → fulfilled (a grant fulfilled) →
  active next period (a winner active in the month after the first period they won or, held
  out, would have won: the earliest such month);
- **uplift**: the chosen month metric in the month after the period, treated would-be winners
  (granted) against held-out ones (domain/holdout.py).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from services.rewards.domain.holdout import HELD_OUT, Uplift
from services.rewards.domain.prices import Prices, cost_fen

GRANT_STATUSES = ("granted", "budget_exhausted", "held", "excluded", "revoked", HELD_OUT)
FULFILMENT_STATES = ("pending", "fulfilled", "failed", "overdue")
# Notify's statuses (SPEC §6), the CSV's notice columns; the JSON keeps any other it reports.
NOTICE_STATUSES = (
    "queued", "deferred", "sending", "sent", "delivered", "failed", "expired", "suppressed"
)  # fmt: skip
FUNNEL_STEPS = ("reached", "entered", "won", "told", "fulfilled", "active_next_period")
DEFAULT_UPLIFT_METRIC = "activity_points"


def period_days(label: str, window: tuple[date, date]) -> tuple[date, date]:
    """First and last local day of a period label: `2026-03-05`, `2026-W10`, `2026-03`,
    `2026`, or `campaign` (the campaign's window, given as its first and last day)."""
    if label == "campaign":
        return window
    if len(label) == 10:
        d = date.fromisoformat(label)
        return d, d
    if len(label) == 8 and label[4:6] == "-W":
        monday = date.fromisocalendar(int(label[:4]), int(label[6:]), 1)
        return monday, monday + timedelta(days=6)
    if len(label) == 7:
        first = date.fromisoformat(f"{label}-01")
        return first, next_month(first) - timedelta(days=1)
    if len(label) == 4 and label.isdigit():
        return date(int(label), 1, 1), date(int(label), 12, 31)
    raise ValueError(f"'{label}' is not a period label")


def next_month(d: date) -> date:
    """The first day of the month after `d`'s."""
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def in_range(label: str, window: tuple[date, date], first: date, last: date) -> bool:
    """Whether a period overlaps the report's days [first, last]."""
    start, end = period_days(label, window)
    return start <= last and end >= first


@dataclass(slots=True)
class PeriodFigures:
    """One rule's period."""

    rule_id: str
    period: str
    entrants: int = 0
    winners: int = 0
    held_out: int = 0
    grants: dict[str, int] = field(default_factory=dict)  # by status
    fulfilment: dict[str, int] = field(default_factory=dict)  # granted grants by state
    units: dict[str, int] = field(default_factory=dict)  # granted units by kind
    money_fen: dict[str, int | None] = field(default_factory=dict)
    money_fen_total: int = 0  # of the kinds with a price
    # From notify (None: not asked, or it does not count per period): users told, notices by
    # status and by (status, reason).
    told: int | None = None
    notices: dict[str, int] | None = None
    notice_reasons: list[dict[str, Any]] | None = None


def price_units(units: Mapping[str, int], prices: Prices) -> tuple[dict[str, int | None], int]:
    """Money per kind (None without a price) and the total of those with one."""
    money = {k: cost_fen(prices, k, n) for k, n in sorted(units.items())}
    return money, sum(m for m in money.values() if m is not None)


@dataclass(frozen=True, slots=True)
class PeriodNotices:
    """Notify's count of one rule's period's reward notices."""

    rule_id: str
    period: str
    counts: dict[str, int]  # by status
    reasons: list[dict[str, Any]]  # {status, reason, n}
    told_users: int  # users with one of them sent or delivered


@dataclass(frozen=True, slots=True)
class GrantCount:
    """Grants of one (rule, period, status, fulfilment state) as the store counted them."""

    rule_id: str
    period: str
    status: str
    fulfilment: str | None
    grants: int


@dataclass(frozen=True, slots=True)
class UnitCount:
    rule_id: str
    period: str
    status: str
    fulfilment: str | None
    kind: str
    units: int


@dataclass(frozen=True, slots=True)
class PeopleCount:
    """Distinct users of one (rule, period): entrants, winners, held out."""

    rule_id: str
    period: str
    entrants: int
    winners: int
    held_out: int


@dataclass(frozen=True, slots=True)
class LedgerCount:
    """One group of the ledger pass: grants (counted once, with their first item) and units of
    one kind, by rule, period, status, fulfilment state and the local day they were recorded."""

    rule_id: str
    period: str
    status: str
    fulfilment: str | None
    day: date
    kind: str
    grants: int
    units: int


def split_ledger(
    rows: Iterable[LedgerCount],
) -> tuple[list[GrantCount], list[UnitCount], list[dict[str, Any]]]:
    """Grant counts, unit counts, and budget use (units standing granted or held by day and
    kind, with the running total per kind)."""
    grants: dict[tuple[str, str, str, str | None], int] = defaultdict(int)
    units: dict[tuple[str, str, str, str | None, str], int] = defaultdict(int)
    days: dict[tuple[date, str], int] = defaultdict(int)
    for r in rows:
        grants[(r.rule_id, r.period, r.status, r.fulfilment)] += r.grants
        units[(r.rule_id, r.period, r.status, r.fulfilment, r.kind)] += r.units
        if r.status in ("granted", "held"):
            days[(r.day, r.kind)] += r.units
    running: dict[str, int] = defaultdict(int)
    use = []
    for (day, kind), n in sorted(days.items()):
        running[kind] += n
        use.append({"day": day, "kind": kind, "units": n, "cumulative": running[kind]})
    return (
        [GrantCount(*k, n) for k, n in sorted(grants.items(), key=lambda kv: str(kv[0]))],
        [UnitCount(*k, n) for k, n in sorted(units.items(), key=lambda kv: str(kv[0]))],
        use,
    )


def people(
    grants: Iterable[GrantCount],
    draw_entrants: Mapping[tuple[str, str], int],
    rank: Mapping[tuple[str, str], tuple[int, int]],
) -> list[PeopleCount]:
    """Entrants, winners and held-out users per (rule, period). Outside rank rules a user has
    one grant per rule and period (role `user`), so grants count users; a draw's entrants are
    its ticket holders (its winners among them); rank rules were counted distinct."""
    by: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for g in grants:
        by[(g.rule_id, g.period)][g.status] += g.grants
    out = []
    for key in sorted(by.keys() | draw_entrants.keys() | rank.keys()):
        statuses = by.get(key, {})
        held = statuses.get(HELD_OUT, 0)
        if key in rank:
            entrants, winners = rank[key]
        else:
            entrants = max(sum(statuses.values()), draw_entrants.get(key, 0))
            winners = statuses.get("granted", 0)
        out.append(PeopleCount(key[0], key[1], entrants, winners, held))
    return out


def per_period(
    grants: Iterable[GrantCount],
    units: Iterable[UnitCount],
    people: Iterable[PeopleCount],
    prices: Prices,
) -> list[PeriodFigures]:
    """Figures per (rule, period), by rule then period."""
    out: dict[tuple[str, str], PeriodFigures] = {}

    def at(rule_id: str, period: str) -> PeriodFigures:
        return out.setdefault((rule_id, period), PeriodFigures(rule_id, period))

    for g in grants:
        f = at(g.rule_id, g.period)
        f.grants[g.status] = f.grants.get(g.status, 0) + g.grants
        if g.status == "granted" and g.fulfilment is not None:
            f.fulfilment[g.fulfilment] = f.fulfilment.get(g.fulfilment, 0) + g.grants
    for u in units:
        if u.status == "granted":
            f = at(u.rule_id, u.period)
            f.units[u.kind] = f.units.get(u.kind, 0) + u.units
    for p in people:
        f = at(p.rule_id, p.period)
        f.entrants, f.winners, f.held_out = p.entrants, p.winners, p.held_out
    for f in out.values():
        f.money_fen, f.money_fen_total = price_units(f.units, prices)
    return [out[k] for k in sorted(out)]


def with_notices(
    figures: Iterable[PeriodFigures], notices: Iterable[PeriodNotices], unattributed: int = 0
) -> list[PeriodFigures]:
    """Each period's figures with its notices (a period without any told no one: 0 — unless
    notify holds notices of no period, sent before it kept them: then such a period's notices
    are unknown, None, not a zero that may be wrong). Notify's periods the report does not show
    (outside its range) are left out."""
    by = {(n.rule_id, n.period): n for n in notices}
    out = []
    for f in figures:
        n = by.get((f.rule_id, f.period))
        if n is None and unattributed:
            out.append(replace(f, told=None, notices=None, notice_reasons=None))
        elif n is None:
            out.append(replace(f, told=0, notices={}, notice_reasons=[]))
        else:
            out.append(
                replace(f, told=n.told_users, notices=dict(n.counts), notice_reasons=n.reasons)
            )
    return out


def totals(
    figures: Sequence[PeriodFigures], units: Iterable[UnitCount], prices: Prices
) -> dict[str, Any]:
    """The whole campaign (in range): grants by status and fulfilment, units and money by kind,
    and the money of fulfilled grants."""
    grants: dict[str, int] = {}
    fulfilment: dict[str, int] = {}
    granted: dict[str, int] = {}
    fulfilled: dict[str, int] = {}
    for f in figures:
        for s, n in f.grants.items():
            grants[s] = grants.get(s, 0) + n
        for s, n in f.fulfilment.items():
            fulfilment[s] = fulfilment.get(s, 0) + n
    for u in units:
        if u.status == "granted":
            granted[u.kind] = granted.get(u.kind, 0) + u.units
            if u.fulfilment == "fulfilled":
                fulfilled[u.kind] = fulfilled.get(u.kind, 0) + u.units
    money, money_total = price_units(granted, prices)
    _, fulfilled_total = price_units(fulfilled, prices)
    return {
        "grants": grants,
        "fulfilment": fulfilment,
        "units": dict(sorted(granted.items())),
        "money_fen": money,
        "money_fen_total": money_total,
        "money_fen_fulfilled": fulfilled_total,
        "unpriced_kinds": sorted(k for k, m in money.items() if m is None),
    }


# Each step's users are a subset of the step it is a share of: told, fulfilled and active next
# period are each counted among the winners, not among one another.
FUNNEL_BASE = {"entered": "reached", "won": "entered", "told": "won", "fulfilled": "won",
               "active_next_period": "won"}  # fmt: skip


def funnel(steps: Mapping[str, int | None]) -> list[dict[str, Any]]:
    """The funnel's steps in order, each with its users and its share of its base step."""
    out: list[dict[str, Any]] = []
    for step in FUNNEL_STEPS:
        users, base = steps.get(step), FUNNEL_BASE.get(step)
        whole = None if base is None else steps.get(base)
        share = None if users is None or not whole else round(users / whole, 4)
        out.append({"step": step, "users": users, "of": base, "share": share})
    return out


def uplift_section(metric: str, result: Uplift) -> dict[str, Any]:
    return {"metric": metric, "level": 0.95, **asdict(result), "significant": result.significant}


# -- CSV ----------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "rule_id",
    "period",
    "entrants",
    "winners",
    "held_out",
    *(f"grants_{s}" for s in GRANT_STATUSES),
    *(f"fulfilment_{s}" for s in FULFILMENT_STATES),
)


def to_csv(figures: Sequence[PeriodFigures], kinds: Sequence[str]) -> str:
    """One line per rule and period: people, grants by status and fulfilment, units and money
    by kind (empty money = no price), then users told and notices by status (empty: notify was
    not asked)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            *CSV_COLUMNS,
            *(f"units_{k}" for k in kinds),
            *(f"money_fen_{k}" for k in kinds),
            "money_fen_total",
            "told",
            *(f"notices_{s}" for s in NOTICE_STATUSES),
        ]
    )
    for f in figures:
        w.writerow(
            [f.rule_id, f.period, f.entrants, f.winners, f.held_out]
            + [f.grants.get(s, 0) for s in GRANT_STATUSES]
            + [f.fulfilment.get(s, 0) for s in FULFILMENT_STATES]
            + [f.units.get(k, 0) for k in kinds]
            + ["" if f.money_fen.get(k) is None else f.money_fen[k] for k in kinds]
            + [f.money_fen_total]
            + _notice_cells(f)
        )
    return buf.getvalue()


def _notice_cells(f: PeriodFigures) -> list[int | str]:
    if f.told is None or f.notices is None:
        return [""] * (1 + len(NOTICE_STATUSES))
    return [f.told, *(f.notices.get(s, 0) for s in NOTICE_STATUSES)]
