"""The "Engage business" dashboard (SPEC §12) read through Grafana's PostgreSQL data source:
static checks here; each panel's SQL is run against a real PostgreSQL with KPI rows in
tests/integration/test_scoring_kpis.py (test_every_business_panel_query_returns_its_columns)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from engage.ops.dashboards import DASHBOARD_DIR, DASHBOARDS, SQL_DASHBOARDS, SQL_DATASOURCE
from engage.ops.grafana_sql import UnknownMacro, expand_macros

ROOT = Path(__file__).resolve().parents[2]
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
START = datetime(2026, 9, 1, tzinfo=UTC)
END = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def test_the_business_dashboard_is_provisioned_apart_from_the_prometheus_ones() -> None:
    assert [d.title for d in SQL_DASHBOARDS] == ["Engage business"]
    assert {d.uid for d in SQL_DASHBOARDS}.isdisjoint({d.uid for d in DASHBOARDS})
    model = json.loads((DASHBOARD_DIR / "engage-business.json").read_text())
    assert {p["datasource"]["uid"] for p in model["panels"]} == {SQL_DATASOURCE["uid"]}


def test_its_data_source_is_provisioned_with_the_uid_the_panels_name() -> None:
    provisioned = [
        ds
        for path in DATASOURCES.glob("*.yml")
        for ds in yaml.safe_load(path.read_text())["datasources"]
    ]
    postgres = [ds for ds in provisioned if ds["uid"] == SQL_DATASOURCE["uid"]]
    assert len(postgres) == 1
    assert postgres[0]["type"] == SQL_DATASOURCE["type"]
    assert postgres[0]["jsonData"]["database"] == "scoring"
    assert "password" in postgres[0]["secureJsonData"]  # from the environment, never inline
    assert postgres[0]["secureJsonData"]["password"].startswith("$")


def test_panels_read_only_the_kpi_tables_and_no_per_user_column() -> None:
    for dashboard in SQL_DASHBOARDS:
        titles = [p.title for p in dashboard.panels]
        assert len(titles) == len(set(titles))
        for panel in dashboard.panels:
            tables = set(re.findall(r"\bFROM\s+(\w+\.\w+)", panel.sql, re.IGNORECASE))
            assert tables and tables <= {"scoring.kpi_day", "scoring.kpi_month"}, panel.title
            assert not re.search(r"\b(user_id|group_id|top_group)\b", panel.sql), panel.title
            assert panel.kind in ("timeseries", "barchart")
            if panel.kind == "timeseries":
                assert panel.columns[0] == "time"


def test_grafana_macros_expand_as_grafana_does() -> None:
    assert expand_macros("$__timeFilter(day)", START, END) == (
        "day BETWEEN '2026-09-01T00:00:00Z' AND '2026-11-30T08:00:00Z'"
    )
    assert expand_macros("$__time(day::timestamp)", START, END) == 'day::timestamp AS "time"'
    assert expand_macros("$__timeGroupAlias(at, '1d')", START, END) == (
        'floor(extract(epoch from at)/86400)*86400 AS "time"'
    )
    assert expand_macros("$__timeFrom() < $__timeTo()", START, END) == (
        "'2026-09-01T00:00:00Z' < '2026-11-30T08:00:00Z'"
    )
    with pytest.raises(UnknownMacro):
        expand_macros("$__schema()", START, END)
    with pytest.raises(UnknownMacro):
        expand_macros("WHERE province = '$province'", START, END)


def test_every_panel_expands_to_plain_sql() -> None:
    for dashboard in SQL_DASHBOARDS:
        for panel in dashboard.panels:
            assert "$" not in expand_macros(panel.sql, START, END), panel.title
