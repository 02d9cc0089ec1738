"""A real Prometheus (Debian's `prometheus` package) on loopback, scraping a running stack."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from engage.runtime import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES_DIR = DEPLOY / "rules"
INSTALL_HINT = "apt-get install -y prometheus (Debian) — scripts/test.sh does it when run as root"


class PrometheusMissing(RuntimeError):
    pass


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrometheusMissing(f"{name} not found; {INSTALL_HINT}")
    return path


def promtool(*args: str) -> str:
    """Run promtool (e.g. `check config FILE`, `check rules FILE...`); raise on failure."""
    done = subprocess.run([binary("promtool"), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}")
    return done.stdout


def loopback_config(targets: dict[str, str], interval_s: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the compose host names swapped for loopback
    addresses and the repository's rule files: same job names, same rules."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = f"{interval_s}s"
    config["global"]["evaluation_interval"] = f"{interval_s}s"
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
            jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def loopback_rules(interval_s: int) -> dict[str, Any]:
    """The rule file with each group's evaluation interval shortened for a minutes-long run."""
    rules: dict[str, Any] = yaml.safe_load((RULES_DIR / "engage.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = f"{interval_s}s"
    return rules


@dataclass
class Series:
    labels: dict[str, str]
    values: list[tuple[float, float]]

    @property
    def finite(self) -> list[tuple[float, float]]:
        return [(t, v) for t, v in self.values if math.isfinite(v)]


class Prometheus:
    """Started with a config generated from deploy/prometheus, stopped (and its data kept)
    under `workdir`."""

    def __init__(self, workdir: Path, targets: dict[str, str], interval_s: int = 1) -> None:
        self.workdir = workdir
        self.targets = targets
        self.interval_s = interval_s
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def start(self, timeout_s: float = 60) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        rules = self.workdir / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "engage.yml").write_text(yaml.safe_dump(loopback_rules(self.interval_s)))
        config = loopback_config(self.targets, self.interval_s)
        config["rule_files"] = [str(rules / "*.yml")]
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        promtool("check", "config", str(self.config_path))
        log = open(self.workdir / "prometheus.log", "ab")  # noqa: SIM115  (the child owns it)
        self.proc = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log')!s}")
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("prometheus not ready")

    def wait_targets_up(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            active = self.client.get("/api/v1/targets").json()["data"]["activeTargets"]
            if active and all(t["health"] == "up" for t in active):
                return
            time.sleep(0.5)
        raise TimeoutError(f"targets not up: {active}")

    def wait_scraped_after(self, instant: float, timeout_s: float = 60) -> None:
        """Until every target has been scraped, and every rule group evaluated, after `instant`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            scraped = [
                t["lastScrape"]
                for t in self.client.get("/api/v1/targets").json()["data"]["activeTargets"]
            ]
            groups = self.client.get("/api/v1/rules").json()["data"]["groups"]
            stamps = [_epoch(s) for s in scraped] + [_epoch(g["lastEvaluation"]) for g in groups]
            if stamps and min(stamps) > instant:
                return
            time.sleep(0.5)
        raise TimeoutError("prometheus did not scrape and evaluate after the demo ended")

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        return self._series(self.client.get("/api/v1/query", params=params).json(), instant=True)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        params: dict[str, str | float] = {
            "query": expr,
            "start": start,
            "end": end,
            "step": step,
        }
        return self._series(self.client.get("/api/v1/query_range", params=params).json())

    def rules(self) -> list[dict[str, Any]]:
        groups = self.client.get("/api/v1/rules").json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    @staticmethod
    def _series(body: dict[str, Any], instant: bool = False) -> list[Series]:
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        out = []
        for item in body["data"]["result"]:
            points = [item["value"]] if instant else item["values"]
            out.append(Series(item["metric"], [(float(t), float(v)) for t, v in points]))
        return out

    def stop(self) -> None:
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class QueryError(RuntimeError):
    pass


def _epoch(stamp: str) -> float:
    """Prometheus's RFC 3339 times (UTC, "Z", up to nanoseconds); Python parses microseconds."""
    match = re.fullmatch(r"([^.Z]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {stamp!r}")
    head, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]}{zone}").timestamp()
