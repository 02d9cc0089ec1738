"""`engage ops check`: run the demo with a real Prometheus scraping it, then prove that every
dashboard panel's query and every recording and alerting rule works (issue 6, SPEC §8).

A panel query passes when it evaluates and returns at least one finite sample while the demo
ran; a recording rule when Prometheus evaluated it without error and it recorded a finite sample;
an alert when its expression has the shape "SIGNAL OP NUMBER [and ...]", evaluates, Prometheus
reports it healthy, and its SIGNAL returned data. Whether an alert would have fired during the
demo is reported, not required (a healthy demo should fire none but BudgetNearlySpent).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engage.ops.dashboards import DASHBOARDS, RATE, Panel
from engage.ops.prometheus import RULES_DIR, Prometheus, QueryError, promtool
from engage.stack import Stack

ALERT_SHAPE = re.compile(
    r"^(?P<signal>[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s*(?P<op>[<>]=?|==|!=)\s*(?P<threshold>-?[0-9.e+]+)"
    r"(?:\s+and\s+.+)?$"
)


@dataclass
class Finding:
    kind: str  # panel | record | alert
    name: str
    expr: str
    series: int = 0
    samples: int = 0
    error: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    rendered: list[Path] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def count(self, kind: str) -> tuple[int, int]:
        mine = [f for f in self.findings if f.kind == kind]
        return sum(f.ok for f in mine), len(mine)

    def summary(self) -> str:
        lines = [
            f"Observed {self.end - self.start:.0f} s of the demo with a real Prometheus.",
            *(
                f"  {kind + 's':<8} {ok}/{n} pass"
                for kind in ("panel", "record", "alert")
                for ok, n in [self.count(kind)]
            ),
        ]
        for f in self.findings:
            mark = "ok  " if f.ok else "FAIL"
            detail = f.error or f"{f.series} series, {f.samples} samples" + (
                f"; {f.note}" if f.note else ""
            )
            lines.append(f"  {mark} {f.kind:<6} {f.name[:60]:<60} {detail}")
        return "\n".join(lines)


def rule_groups() -> list[dict[str, Any]]:
    rules: dict[str, Any] = yaml.safe_load((RULES_DIR / "engage.yml").read_text())
    groups: list[dict[str, Any]] = rules["groups"]
    return groups


def panel_expr(expr: str, window: str) -> str:
    return expr.replace(RATE, window)


def _range(
    prom: Prometheus, finding: Finding, expr: str, start: float, end: float, step: float
) -> None:
    try:
        series = prom.query_range(expr, start, end, step)
    except QueryError as exc:
        finding.error = str(exc)
        return
    finding.series = len(series)
    finding.samples = sum(len(s.finite) for s in series)
    if not finding.samples:
        finding.error = "no data while the demo ran"


def prove(prom: Prometheus, start: float, end: float, window: str = "30s") -> Report:
    report = Report(start=start, end=end)
    step = max(1.0, (end - start) / 300)
    panel: Panel
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            for query in panel.queries:
                finding = Finding("panel", f"{dashboard.uid}: {panel.title}", query.expr)
                _range(prom, finding, panel_expr(query.expr, window), start, end, step)
                report.findings.append(finding)

    health = {rule["name"]: rule for rule in prom.rules()}
    recorded: dict[str, Finding] = {}
    for group in rule_groups():
        for rule in group["rules"]:
            if "record" not in rule:
                continue
            finding = Finding("record", rule["record"], rule["expr"])
            _range(prom, finding, rule["record"], start, end, step)
            state = health.get(rule["record"])
            if state is None or state.get("health") != "ok":
                finding.error = f"rule health: {state and state.get('lastError')!r}"
            recorded[rule["record"]] = finding
            report.findings.append(finding)
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                report.findings.append(_prove_alert(prom, rule, health, recorded, start, end, step))
    return report


def _prove_alert(
    prom: Prometheus,
    rule: dict[str, Any],
    health: dict[str, dict[str, Any]],
    recorded: dict[str, Finding],
    start: float,
    end: float,
    step: float,
) -> Finding:
    finding = Finding("alert", rule["alert"], rule["expr"])
    shape = ALERT_SHAPE.match(" ".join(str(rule["expr"]).split()))
    if shape is None:
        finding.error = "expression is not 'SIGNAL OP NUMBER [and ...]'"
        return finding
    signal = shape["signal"]
    state = health.get(rule["alert"])
    if state is None or state.get("health") != "ok":
        finding.error = f"rule health: {state and state.get('lastError')!r}"
        return finding
    source = recorded.get(signal)
    if source is not None and not source.ok:
        finding.error = f"its signal {signal} returned no data"
        return finding
    if source is None:
        _range(prom, finding, signal, start, end, step)
        if finding.error:
            finding.error = f"its signal {signal}: {finding.error}"
            return finding
    else:
        finding.series, finding.samples = source.series, source.samples
    try:
        firing = prom.query_range(rule["expr"], start, end, step)
    except QueryError as exc:
        finding.error = str(exc)
        return finding
    finding.note = f"condition true in {len(firing)} series during the demo" if firing else "quiet"
    return finding


@contextlib.asynccontextmanager
async def observed(
    stack: Stack, workdir: Path, results: list[Report], render_to: Path | None = None
) -> AsyncIterator[None]:
    """Prometheus scraping every service of `stack` while the body runs; the proof after."""
    promtool("check", "rules", str(RULES_DIR / "engage.yml"))
    targets = {name: f"127.0.0.1:{svc.port}" for name, svc in stack.services.items()}
    prom = Prometheus(workdir, targets).start()
    try:
        await asyncio.to_thread(prom.wait_targets_up)
        start = time.time()
        yield
        end = time.time()
        # Two more scrapes and evaluations, so the last of the demo's activity is recorded.
        await asyncio.to_thread(prom.wait_scraped_after, end + 2 * prom.interval_s)
        report = await asyncio.to_thread(prove, prom, start, time.time())
        if render_to is not None:
            from engage.ops.render import render_dashboards

            report.rendered = await asyncio.to_thread(
                render_dashboards, prom, start, time.time(), render_to
            )
        results.append(report)
    finally:
        prom.stop()


async def run_check(
    var_dir: Path, users: int, groups: int, seed: int, render_to: Path | None = None
) -> tuple[int, Report]:
    """The demo (its own exit code) under observation, and the report."""
    from engage.demo import run_demo

    results: list[Report] = []
    stack = Stack(var_dir=var_dir, fixed_ports=False)
    code = await run_demo(
        users,
        groups,
        seed,
        keep_running=False,
        stack=stack,
        observe=lambda s: observed(s, var_dir / "prometheus", results, render_to),
    )
    if not results:
        raise RuntimeError("the demo ended before Prometheus could be queried")
    return code, results[0]
