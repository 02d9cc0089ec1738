"""Each dashboard's key panels drawn from Prometheus data (matplotlib), for the README.

Grafana cannot run here; these PNGs are drawn from the same queries the JSON dashboards hold,
evaluated by the Prometheus that scraped the demo.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from engage.ops.dashboards import DASHBOARDS, RATE, Panel
from engage.ops.prometheus import Prometheus, Series

UNITS = {"percentunit": "share", "s": "seconds", "ops": "per second", "reqps": "requests/s"}
MAX_LINES = 8


def legend(template: str, series: Series) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: series.labels.get(m[1], ""), template)


def render_dashboards(
    prom: Prometheus, start: float, end: float, out_dir: Path, window: str = "10s"
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    step = max(1.0, (end - start) / 300)
    paths = []
    for dashboard in DASHBOARDS:
        panels = [p for p in dashboard.panels if p.key]
        cols = 2
        rows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            _draw(ax, prom, panel, start, end, step, window)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.suptitle(f"{dashboard.title} — demo run, {end - start:.0f} s", fontsize=13)
        fig.tight_layout()
        path = out_dir / f"{dashboard.uid}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def _draw(
    ax: Axes, prom: Prometheus, panel: Panel, start: float, end: float, step: float, window: str
) -> None:
    lines = 0
    for query in panel.queries:
        expr = query.expr.replace(RATE, window)
        for series in prom.query_range(expr, start, end, step):
            points = series.finite
            if not points or lines >= MAX_LINES:
                continue
            ax.plot(
                [t - start for t, _ in points],
                [v for _, v in points],
                label=legend(query.legend, series)[:40],
                linewidth=1.2,
            )
            lines += 1
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("seconds into the demo", fontsize=8)
    ax.set_ylabel(UNITS.get(panel.unit, ""), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=6, loc="upper right")
