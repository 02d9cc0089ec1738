"""The Grafana dashboards, as code: `engage ops dashboards` writes deploy/grafana/dashboards/*.json.

Written from Python so every panel is a (title, queries, unit) triple a reviewer can read in one
screen, and so the observability check (engage.ops.check) can evaluate exactly the queries that
ship. The committed JSON must equal what this module renders (a unit test says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "engage-prometheus"}
SERVICES = ("ingest", "scoring", "rewards", "notify")
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    key: bool = False  # rendered to PNG for the README


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def q(expr: str, legend: str) -> Query:
    return Query(" ".join(expr.split()), legend)


def rate(metric: str, by: str, selector: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{RATE}]))"


def quantile(p: float, metric: str, by: str, selector: str = "") -> str:
    inner = f"sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[{RATE}]))"
    return f"histogram_quantile({p}, {inner})"


def rate_panel(
    title: str,
    metric: str,
    by: str,
    legend: str,
    selector: str = "",
    key: bool = False,
    description: str = "",
) -> Panel:
    """Per-second rate of a counter, summed by `by`."""
    return Panel(title, (q(rate(metric, by, selector), legend),), "ops", description, key)


def error_ratio(selector: str, by: str) -> str:
    """5xx / all requests; 0 rather than nothing while there are requests but no errors."""
    errors = rate("engage_http_requests_total", by, f'{selector}, status=~"5.."'.lstrip(", "))
    everything = rate("engage_http_requests_total", by, selector)
    return f"({errors} or {everything} * 0) / {everything}"


def http_panels(service: str) -> tuple[Panel, ...]:
    sel = f'service="{service}"'
    return (
        Panel(
            "HTTP requests by route and status",
            (q(rate("engage_http_requests_total", "route, status", sel), "{{route}} {{status}}"),),
            "reqps",
        ),
        Panel(
            "HTTP latency p99 by route",
            (q(quantile(0.99, "engage_http_request_duration_seconds", "route", sel), "{{route}}"),),
            "s",
        ),
        Panel(
            "HTTP 5xx ratio",
            (q(error_ratio(sel, "service"), "5xx share"),),
            "percentunit",
            "Server errors over all requests; the HttpErrorRatio alert fires above 5 %.",
        ),
    )


def consumer_panels(service: str, topic: str) -> tuple[Panel, ...]:
    sel = f'service="{service}"'
    return (
        Panel(
            f"Consumer lag on {topic} by partition",
            (
                q(
                    f"max by (topic, partition) (engage_consumer_lag{{{sel}}})",
                    "{{topic}}/{{partition}}",
                ),
            ),
            "short",
            "Records between the partition end and this group's position (SPEC §8).",
            key=True,
        ),
        rate_panel(
            "Records applied by type", "engage_consumer_events_total", "type", "{{type}}", sel, True
        ),
        Panel(
            "Batch size p50 / transaction time p99",
            (
                q(quantile(0.5, "engage_consumer_batch_records", "service", sel), "records p50"),
                q(
                    quantile(0.99, "engage_consumer_transaction_seconds", "service", sel),
                    "transaction s p99",
                ),
            ),
            "short",
        ),
        Panel(
            "Duplicates dropped and dead letters",
            (
                q(rate("engage_consumer_duplicates_total", "service", sel), "duplicates"),
                q(rate("engage_consumer_dead_letters_total", "service", sel), "to DLQ"),
            ),
            "ops",
            "Duplicates are redeliveries absorbed by the processed-event ledger; DLQ records "
            "are poison records with the reason in a header.",
        ),
    )


def outbox_panel(service: str) -> Panel:
    sel = f'service="{service}"'
    return Panel(
        "Outbox: waiting and published",
        (
            q(f"sum by (topic) (engage_outbox_pending{{{sel}}})", "waiting {{topic}}"),
            q(rate("engage_outbox_published_total", "topic", sel), "published/s {{topic}}"),
        ),
        "short",
        "Records committed with the results and not yet on Kafka; should drain to 0.",
    )


NOTIFICATIONS = rate_panel(
    "Notifications by channel and status",
    "engage_notifications_total",
    "channel, status",
    "{{channel}} {{status}}",
    key=True,
)

OVERVIEW = Dashboard(
    "engage-overview",
    "Engage — overview",
    "Events in and out, lag, end-to-end latency, errors, grants and sends across the pipeline.",
    (
        Panel(
            "Services up",
            (q('sum by (job) (up{job=~"ingest|scoring|rewards|notify"})', "{{job}}"),),
            "short",
            "Scraped replicas per service.",
        ),
        rate_panel(
            "Events in (ingest) by result",
            "engage_ingest_events_total",
            "result",
            "{{result}}",
            key=True,
        ),
        rate_panel(
            "Records applied by service",
            "engage_consumer_events_total",
            "service",
            "{{service}}",
            key=True,
        ),
        Panel(
            "Consumer lag by service",
            (q("sum by (service, topic) (engage_consumer_lag)", "{{service}} ← {{topic}}"),),
            "short",
            key=True,
        ),
        Panel(
            "End-to-end latency (received_at → scored)",
            (
                q(quantile(0.5, "engage_end_to_end_seconds", "service"), "p50 {{service}}"),
                q(quantile(0.99, "engage_end_to_end_seconds", "service"), "p99 {{service}}"),
            ),
            "s",
            key=True,
        ),
        Panel(
            "HTTP 5xx ratio by service",
            (q(error_ratio("", "service"), "{{service}}"),),
            "percentunit",
        ),
        rate_panel(
            "Grants by kind and status",
            "engage_grants_total",
            "kind, status",
            "{{kind}} {{status}}",
            key=True,
        ),
        NOTIFICATIONS,
        Panel(
            "Dead letters (all services)",
            (
                q(rate("engage_consumer_dead_letters_total", "service"), "consumer {{service}}"),
                q(rate("engage_notify_dead_letters_total", "category"), "notify {{category}}"),
            ),
            "ops",
        ),
    ),
)

THROTTLED = 'service="ingest", status=~"429|503"'
SCORING = 'service="scoring"'

INGEST = Dashboard(
    "engage-ingest",
    "Engage — ingest",
    "POST /v1/events: accepted and rejected events, publish latency, throttling.",
    (
        rate_panel(
            "Events accepted by type",
            "engage_ingest_events_total",
            "type",
            "{{type}}",
            'result="accepted"',
            key=True,
        ),
        rate_panel(
            "Events rejected by type",
            "engage_ingest_events_total",
            "type",
            "{{type}}",
            'result="rejected"',
            description="Rejected events get a code naming the field in the response; "
            "invalid = an unknown type.",
        ),
        Panel(
            "Broker acknowledgement latency",
            (
                q(quantile(0.5, "engage_ingest_publish_seconds", "job"), "p50"),
                q(quantile(0.99, "engage_ingest_publish_seconds", "job"), "p99"),
            ),
            "s",
            "Time until the broker acknowledged all of a request's events (acks=all).",
            key=True,
        ),
        Panel(
            "Throttled (429) and unavailable (503) responses",
            (
                q(
                    rate("engage_http_requests_total", "status", THROTTLED)
                    + " or "
                    + rate("engage_http_requests_total", "status", 'service="ingest"')
                    + " * 0",
                    "{{status}}",
                ),
            ),
            "reqps",
            "429 = a key's rate limit; 503 = the broker did not acknowledge in time (clients "
            "retry with the same event_id).",
        ),
        *http_panels("ingest"),
    ),
)

SCORING_DASHBOARD = Dashboard(
    "engage-scoring",
    "Engage — scoring",
    "engage.events.v1 → per-user / per-group metrics and vitality → engage.metrics.v1.",
    (
        *consumer_panels("scoring", "engage.events.v1"),
        Panel(
            "End-to-end latency (received_at → committed)",
            (
                q(quantile(0.5, "engage_end_to_end_seconds", "service", SCORING), "p50"),
                q(quantile(0.99, "engage_end_to_end_seconds", "service", SCORING), "p99"),
            ),
            "s",
            key=True,
        ),
        Panel(
            "Apply step time p99",
            (q(quantile(0.99, "engage_scoring_step_seconds", "step"), "{{step}}"),),
            "s",
            "Where a batch's time goes (decode, ledger, aggregates, changelog).",
        ),
        Panel(
            "Anomaly flags raised (per hour)",
            (q("sum by (flag) (increase(engage_anomaly_flags_total[1h]))", "{{flag}}"),),
            "short",
            "New (record, flag) pairs scoring published: message_rate, points_spike, lockstep, "
            "late_joins, dominant_member (docs/metrics.md#anomaly-flags). Any rise: review.",
        ),
        Panel(
            "Events refused by group-fact and authority rules",
            (
                q(
                    "sum by (reason) (rate(engage_scoring_refused_events_total[5m]))",
                    "{{reason}}",
                ),
            ),
            "ops",
            "Valid events scoring refused (SPEC §14): audited in scoring.refused_events.",
        ),
        outbox_panel("scoring"),
        *http_panels("scoring"),
    ),
)

REWARDS = Dashboard(
    "engage-rewards",
    "Engage — rewards",
    "engage.metrics.v1 → campaign rules → grants ledger → engage.grants.v1; settlement, budgets.",
    (
        *consumer_panels("rewards", "engage.metrics.v1"),
        rate_panel(
            "Grants by campaign and status",
            "engage_grants_total",
            "campaign, status",
            "{{campaign}} {{status}}",
            key=True,
        ),
        Panel(
            "Budget remaining (share of limit)",
            (
                q(
                    "engage_budget_remaining / (engage_budget_limit > 0)",
                    "{{campaign}} {{kind}}",
                ),
            ),
            "percentunit",
            "The BudgetNearlySpent alert fires below 10 %.",
            key=True,
        ),
        Panel(
            "Settlement time p99 by rule kind",
            (q(quantile(0.99, "engage_settlement_seconds", "kind"), "{{kind}}"),),
            "s",
        ),
        Panel(
            "Draw entries (latest draw)",
            (q("max by (campaign, rule) (engage_draw_entries)", "{{campaign}} {{rule}}"),),
            "short",
        ),
        outbox_panel("rewards"),
        *http_panels("rewards"),
    ),
)

NOTIFY = Dashboard(
    "engage-notify",
    "Engage — notify",
    "Grants and send requests → SMS / IM with caps, windows, opt-outs and retries.",
    (
        NOTIFICATIONS,
        Panel(
            "Provider latency p99",
            (q(quantile(0.99, "engage_provider_latency_seconds", "provider"), "{{provider}}"),),
            "s",
            key=True,
        ),
        Panel(
            "Provider failure ratio",
            (
                q(
                    'sum by (provider) (rate(engage_provider_latency_seconds_count{outcome="error"}'
                    f"[{RATE}])) / sum by (provider) "
                    f"(rate(engage_provider_latency_seconds_count[{RATE}]))",
                    "{{provider}}",
                ),
            ),
            "percentunit",
            "The ProviderFailures alert fires above 20 % for 10 minutes.",
            key=True,
        ),
        Panel(
            "Waiting to be sent by status",
            (q("sum by (status) (engage_notify_waiting)", "{{status}}"),),
            "short",
            "queued = due now; deferred = waiting for a send window or a retry.",
        ),
        Panel(
            "Suppressed by the daily cap, dead-lettered",
            (
                q(rate("engage_notify_cap_suppressed_total", "category"), "cap {{category}}"),
                q(rate("engage_notify_dead_letters_total", "category"), "DLQ {{category}}"),
            ),
            "ops",
        ),
        *consumer_panels("notify", "engage.grants.v1 / engage.notify.v1"),
        *http_panels("notify"),
    ),
)

DASHBOARDS = (OVERVIEW, INGEST, SCORING_DASHBOARD, REWARDS, NOTIFY)


def grafana_json(dashboard: Dashboard) -> dict[str, Any]:
    """A Grafana (10+) dashboard model: two panels per row, time series, one datasource."""
    panels: list[dict[str, Any]] = []
    for i, panel in enumerate(dashboard.panels):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": panel.title,
                "description": panel.description,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": chr(ord("A") + j),
                        "datasource": DATASOURCE,
                        "expr": query.expr,
                        "legendFormat": query.legend,
                    }
                    for j, query in enumerate(panel.queries)
                ],
            }
        )
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["engage"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "links": [
            {"title": d.title, "type": "link", "url": f"/d/{d.uid}"}
            for d in DASHBOARDS
            if d.uid != dashboard.uid
        ],
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


# Dashboards read from PostgreSQL (SPEC §12's business KPIs), through Grafana's PostgreSQL data
# source on scoring's database (deploy/grafana/provisioning/datasources/scoring-postgres.yml).
# Kept apart from DASHBOARDS, whose panels are PromQL proven against Prometheus; each of these
# panels' SQL is proven against a real PostgreSQL with KPI rows (engage.ops.grafana_sql).
SQL_DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "engage-scoring-postgres"}
KPI_SCHEMA = "scoring"  # SCORING_SCHEMA_NAME's default: the SQL names its tables with it
# A province key `?<group>` holds users whose top group's creation has not arrived: unknown.
PROVINCE = "CASE WHEN province LIKE '?%' THEN 'unknown' ELSE province END"


@dataclass(frozen=True)
class SqlPanel:
    """One panel, one SQL query: `columns` are what it must return (the proof checks them).
    `timeseries` panels return `time` first, sorted; `barchart` panels a label column first."""

    title: str
    sql: str
    kind: str  # "timeseries" or "barchart"
    columns: tuple[str, ...]
    unit: str = "short"
    description: str = ""


@dataclass(frozen=True)
class SqlDashboard:
    uid: str
    title: str
    description: str
    panels: tuple[SqlPanel, ...] = field(default_factory=tuple)


def sql(text: str) -> str:
    return " ".join(text.split())


BUSINESS = SqlDashboard(
    "engage-business",
    "Engage business",
    "Business KPIs (SPEC §12, docs/metrics.md#business-kpis) from scoring's kpi_day and "
    "kpi_month tables, kept with the aggregates. Days and months are local (deployment zone).",
    (
        SqlPanel(
            "Daily active users (DAU) and new users",
            sql(f"""
                SELECT $__time(day::timestamp), sum(active_users) AS "active users (DAU)",
                       sum(new_users) AS "new users"
                FROM {KPI_SCHEMA}.kpi_day
                WHERE client = 'all' AND $__timeFilter(day)
                GROUP BY day ORDER BY day"""),
            "timeseries",
            ("time", "active users (DAU)", "new users"),
            description="Users with a pc/mobile message that day; users first seen that day.",
        ),
        SqlPanel(
            "Stickiness: DAU / MAU by day",
            sql(f"""
                SELECT $__time(d.day::timestamp),
                       sum(d.active_users)::float8 / nullif(max(m.mau), 0) AS "DAU / MAU"
                FROM {KPI_SCHEMA}.kpi_day d
                JOIN (SELECT month, sum(active_users) AS mau FROM {KPI_SCHEMA}.kpi_month
                      WHERE client = 'all' GROUP BY month) m
                  ON m.month = date_trunc('month', d.day)::date
                WHERE d.client = 'all' AND $__timeFilter(d.day)
                GROUP BY d.day ORDER BY d.day"""),
            "timeseries",
            ("time", "DAU / MAU"),
            "percentunit",
            "The day's active users over its month's active users.",
        ),
        SqlPanel(
            "Lifecycle by month",
            sql(f"""
                SELECT to_char(month, 'YYYY-MM') AS month, sum(active_users) AS "active (MAU)",
                       sum(new_users) AS new, sum(returning_users) AS returning,
                       sum(resurrecting_users) AS resurrecting, sum(dormant_users) AS dormant,
                       sum(loyal_users) AS loyal
                FROM {KPI_SCHEMA}.kpi_month
                WHERE client = 'all'
                  AND month BETWEEN date_trunc('month', $__timeFrom()::timestamptz)::date
                                AND $__timeTo()::timestamptz::date
                GROUP BY month ORDER BY month"""),
            "barchart",
            ("month", "active (MAU)", "new", "returning", "resurrecting", "dormant", "loyal"),
            description="PostHog's stages (docs/metrics.md#lifecycle): new, returning, "
            "resurrecting (active again), dormant (active last month, not this); loyal: active "
            "3+ months in a row.",
        ),
        SqlPanel(
            "Messages by province",
            sql(f"""
                SELECT {PROVINCE} AS province, sum(messages) AS messages
                FROM {KPI_SCHEMA}.kpi_day
                WHERE client = 'all' AND $__timeFilter(day)
                GROUP BY 1 ORDER BY 2 DESC, 1"""),
            "barchart",
            ("province", "messages"),
            description="Messages (pc, mobile and SMS) in the time range, by the province of "
            "the group each user sent most messages to that month.",
        ),
        SqlPanel(
            "Online hours by province",
            sql(f"""
                SELECT {PROVINCE} AS province,
                       round(sum(online_seconds) / 3600.0, 1)::float8 AS "online hours"
                FROM {KPI_SCHEMA}.kpi_day
                WHERE client = 'all' AND $__timeFilter(day)
                GROUP BY 1 ORDER BY 2 DESC, 1"""),
            "barchart",
            ("province", "online hours"),
            description="Sessions' online time in the time range, split across local days.",
        ),
        SqlPanel(
            "Messages, online hours and sessions by client",
            sql(f"""
                SELECT client, sum(messages) AS messages,
                       round(sum(online_seconds) / 3600.0, 1)::float8 AS "online hours",
                       sum(sessions) AS sessions
                FROM {KPI_SCHEMA}.kpi_day
                WHERE client <> 'all' AND $__timeFilter(day)
                GROUP BY client ORDER BY client"""),
            "barchart",
            ("client", "messages", "online hours", "sessions"),
            description="Per client (pc, mobile, sms); sessions under the client of their "
            "first login.",
        ),
        SqlPanel(
            "Active users by client and day",
            sql(f"""
                SELECT $__time(day::timestamp), client AS metric, sum(active_users) AS value
                FROM {KPI_SCHEMA}.kpi_day
                WHERE client <> 'all' AND $__timeFilter(day)
                GROUP BY day, client ORDER BY day, client"""),
            "timeseries",
            ("time", "metric", "value"),
            description="Users with ≥ 1 message from that client (SMS senders are never "
            "'active' in the total).",
        ),
    ),
)

SQL_DASHBOARDS = (BUSINESS,)


def sql_grafana_json(dashboard: SqlDashboard) -> dict[str, Any]:
    """A Grafana (10+) dashboard on the PostgreSQL data source: raw SQL targets, time series
    (`time_series` format) or bar charts (`table` format, first column on the x axis)."""
    panels: list[dict[str, Any]] = []
    for i, panel in enumerate(dashboard.panels):
        bars = panel.kind == "barchart"
        options: dict[str, Any] = {"legend": {"displayMode": "list", "placement": "bottom"}}
        if bars:
            options |= {"xField": panel.columns[0], "orientation": "auto", "showValue": "auto"}
        panels.append(
            {
                "id": i + 1,
                "type": panel.kind,
                "title": panel.title,
                "description": panel.description,
                "datasource": SQL_DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": options,
                "targets": [
                    {
                        "refId": "A",
                        "datasource": SQL_DATASOURCE,
                        "editorMode": "code",
                        "format": "table" if bars else "time_series",
                        "rawQuery": True,
                        "rawSql": panel.sql,
                    }
                ],
            }
        )
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["engage", "business"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "5m",
        "time": {"from": "now-90d", "to": "now"},
        "links": [{"title": d.title, "type": "link", "url": f"/d/{d.uid}"} for d in DASHBOARDS],
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    models = [grafana_json(d) for d in DASHBOARDS] + [sql_grafana_json(d) for d in SQL_DASHBOARDS]
    return {f"{m['uid']}.json": json.dumps(m, indent=2, ensure_ascii=False) + "\n" for m in models}


def write(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, body in rendered().items():
        path = directory / name
        path.write_text(body)
        paths.append(path)
    return paths
