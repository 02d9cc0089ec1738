"""The proof of the PostgreSQL-backed dashboards (engage.ops.dashboards.SQL_DASHBOARDS): each
panel's SQL, its Grafana macros expanded the way Grafana's PostgreSQL data source does, run
against a real database holding KPI rows; it must return rows with the panel's columns.

Grafana cannot run here (as for the Prometheus proof, engage.ops.check), so the macros are
expanded here, following Grafana's `grafana-postgresql-datasource` macro engine: times are
RFC 3339 in UTC, intervals in seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engage.ops.dashboards import SQL_DASHBOARDS, SqlPanel

MACRO = re.compile(r"\$(__[A-Za-z0-9_]+)\(([^)]*)\)")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UnknownMacro(ValueError):
    pass


def _seconds(interval: str) -> int:
    match = re.fullmatch(r"'?(\d+)([smhdw])'?", interval.strip())
    if not match:
        raise UnknownMacro(f"interval {interval!r}")
    return int(match[1]) * UNITS[match[2]]


def expand_macros(text: str, start: datetime, end: datetime) -> str:
    """`text` with Grafana's PostgreSQL macros replaced for the time range [start, end]."""
    frm = f"'{start.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    to = f"'{end.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"

    def one(match: re.Match[str]) -> str:
        name, args = match[1], [a.strip() for a in match[2].split(",")] if match[2] else []
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) AS "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN {frm} AND {to}"
        if name == "__timeFrom":
            return frm
        if name == "__timeTo":
            return to
        if name in ("__timeGroup", "__timeGroupAlias"):
            seconds = _seconds(args[1])
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}"
        raise UnknownMacro(name)

    expanded = MACRO.sub(one, text)
    if "$" in expanded:  # a macro or template variable nobody would fill in
        raise UnknownMacro(expanded)
    return expanded


@dataclass(frozen=True)
class PanelResult:
    dashboard: str
    panel: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    problem: str | None  # None: proven

    @property
    def ok(self) -> bool:
        return self.problem is None


def judge(panel: SqlPanel, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str | None:
    """What is wrong with a panel's answer (None: nothing)."""
    if columns != panel.columns:
        return f"columns {columns}, the panel expects {panel.columns}"
    if not rows:
        return "no rows"
    if panel.kind == "timeseries":
        times = [r[0] for r in rows]
        if any(not isinstance(t, datetime) for t in times) or times != sorted(times):
            return "time column not a sorted timestamp"
    elif any(not isinstance(r[0], str) for r in rows):
        return "label column not text"
    return None


async def prove_sql_panels(database_url: str, start: datetime, end: datetime) -> list[PanelResult]:
    """Run every PostgreSQL-backed panel's SQL for the time range [start, end]."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    results: list[PanelResult] = []
    try:
        for dashboard in SQL_DASHBOARDS:
            for panel in dashboard.panels:
                statement = await conn.prepare(expand_macros(panel.sql, start, end))
                columns = tuple(a.name for a in statement.get_attributes())
                rows = [tuple(r) for r in await statement.fetch()]
                problem = judge(panel, columns, rows)
                results.append(PanelResult(dashboard.uid, panel.title, columns, rows, problem))
    finally:
        await conn.close()
    return results
