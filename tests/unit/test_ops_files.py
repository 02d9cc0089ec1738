"""Static checks of the operations files: dashboards up to date, rules documented, configs valid."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from engage.ops.check import rule_groups
from engage.ops.dashboards import DASHBOARD_DIR, DASHBOARDS, rendered

ROOT = Path(__file__).resolve().parents[2]


def test_committed_dashboards_are_what_the_code_renders() -> None:
    on_disk = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    assert on_disk == rendered(), "run `engage ops dashboards` and commit the JSON"


def test_panel_ids_are_unique_and_every_panel_has_a_query() -> None:
    for dashboard in DASHBOARDS:
        titles = [p.title for p in dashboard.panels]
        assert len(titles) == len(set(titles)), dashboard.uid
        assert all(p.queries for p in dashboard.panels)


def test_no_query_groups_by_a_per_user_label() -> None:
    unbounded = re.compile(r"\b(user_id|group_id|event_id|phone|key)\b")
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            for query in panel.queries:
                assert not unbounded.search(query.expr), (dashboard.uid, panel.title)


def test_every_alert_links_to_its_runbook_section() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("#")
    }
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" in rule:
                link = rule["annotations"]["runbook"]
                assert link == f"docs/operations.md#{rule['alert'].lower()}"
                assert rule["alert"].lower() in anchors, f"no runbook section for {rule['alert']}"
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="prometheus package not installed")
@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_promtool_accepts_the_configs_and_rules(config: str, tmp_path: Path) -> None:
    prom = ROOT / "deploy" / "prometheus"
    data = yaml.safe_load((prom / config).read_text())
    for job in data["scrape_configs"]:
        # Debian's Prometheus is built without Kubernetes discovery: its promtool cannot parse
        # that block, so it is swapped for a static target here (the relabelling still checked).
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["engage-pod:8001"]}]
    checked_copy = tmp_path / config
    checked_copy.write_text(yaml.safe_dump(data))
    rules = subprocess.run(
        ["promtool", "check", "rules", str(prom / "rules" / "engage.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    checked = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(checked_copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
