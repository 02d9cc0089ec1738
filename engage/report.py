"""`engage report campaign ID` and `engage report month YYYY-MM` (SPEC §12): the tables a
campaign owner reads the morning after, printed, and PNG charts written beside them.

A campaign report is rewards' `GET /v1/campaigns/{id}/report` (notices, over the campaign and
per rule and period, filled in from notify's `GET /v1/notifications/counts?campaign_id=` when
rewards could not ask); a month report is
scoring's `GET /v1/stats/month/{m}` (overall, `?by=province`, `?by=client`) and
`GET /v1/stats/day/{d}` for each day of the month so far. Tables use `rich` when it is
installed, plain aligned text otherwise; charts use matplotlib (a dev dependency, installed by
scripts/bootstrap.sh) and are skipped, with a note, without it.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx

from services.rewards.domain.periods import label_first_day

STEP_NAMES = {
    "reached": "reached",
    "entered": "entered",
    "won": "won",
    "told": "told",
    "fulfilled": "fulfilled",
    "active_next_period": "active next period",
}


@dataclass
class Printed:
    """What a report printed and wrote."""

    text: str
    charts: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- tables -----------------------------------------------------------------------------------


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table as text: rich's box drawing when installed, aligned columns otherwise."""
    cells = [[_cell(v) for v in r] for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is optional
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines) + "\n"
    t = Table()
    for i, h in enumerate(headers):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in cells:
        t.add_row(*r)
    console = Console(record=True, width=120, force_terminal=False, color_system=None)
    with console.capture() as cap:
        console.print(t)
    return f"{title}\n{cap.get()}"


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def yuan(fen: int | None) -> str:
    return "—" if fen is None else f"¥{fen / 100:,.2f}"


def money_cell(money: dict[str, int | None], total: int) -> str:
    """A period's money: `—` when none of its kinds has a price, `+ ?` when some lack one."""
    if money and all(m is None for m in money.values()):
        return "—"
    return yuan(total) + (" + ?" if any(m is None for m in money.values()) else "")


# -- campaign ---------------------------------------------------------------------------------


async def fetch_campaign(
    urls: dict[str, str], key: str, campaign_id: str, first: str | None, last: str | None
) -> dict[str, Any]:
    """Rewards' report, its notices asked of notify when rewards left them out."""
    headers = {"Authorization": f"Bearer {key}"}
    params = {k: v for k, v in (("from", first), ("to", last)) if v}
    async with httpx.AsyncClient(base_url=urls["rewards"], headers=headers, timeout=60) as c:
        r = await c.get(f"/v1/campaigns/{campaign_id}/report", params=params)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
    if doc.get("notices") is None and "notify" in urls:
        async with httpx.AsyncClient(base_url=urls["notify"], headers=headers, timeout=30) as c:
            r = await c.get("/v1/notifications/counts", params={"campaign_id": campaign_id})
            if r.status_code == 200:
                counted = r.json()
                unattributed = int(counted.get("unattributed") or 0)
                doc["periods"] = _with_period_notices(
                    doc["periods"], counted.pop("periods", None), unattributed
                )
                doc["notices"] = counted
                told = int(counted.get("told_users") or 0)
                doc["funnel"] = _with_told(doc["funnel"], told)
    return doc


def _with_period_notices(
    periods: list[dict[str, Any]], counted: list[dict[str, Any]] | None, unattributed: int = 0
) -> list[dict[str, Any]]:
    """Each rule's period with notify's count of its notices and the users they told (0 when
    notify has none for it, unknown while notify holds notices of no period); unchanged when
    notify does not count per period."""
    if counted is None:
        return periods
    by = {(c["rule_id"], c["period"]): c for c in counted}
    out = []
    for p in periods:
        if (p["rule_id"], p["period"]) not in by and unattributed:
            out.append({**p, "told": None, "notices": None, "notice_reasons": None})
            continue
        c = by.get((p["rule_id"], p["period"]), {})
        out.append({**p, "told": int(c.get("told_users") or 0),
                    "notices": dict(c.get("counts") or {}),
                    "notice_reasons": list(c.get("reasons") or [])})  # fmt: skip
    return out


def _with_told(funnel: list[dict[str, Any]], told: int) -> list[dict[str, Any]]:
    """The funnel with notify's count of users told (a share of the winners)."""
    won = next((s["users"] for s in funnel if s["step"] == "won"), None)
    return [
        {**s, "users": told, "share": round(told / won, 4) if won else None}
        if s["step"] == "told"
        else s
        for s in funnel
    ]


def render_campaign(doc: dict[str, Any], out_dir: Path) -> Printed:
    """The campaign's tables, and its funnel, uplift and budget-use charts under `out_dir`."""
    cid = doc["campaign_id"]
    head = (
        f"Campaign {cid} — {doc['name']} (version {doc['version']}, {doc['state']}), "
        f"{doc['from']} … {doc['to']}\n"
    )
    parts = [head]
    parts.append(
        table(
            "Funnel",
            ["step", "users", "share"],
            [
                [
                    STEP_NAMES[s["step"]],
                    s["users"],
                    None if s["share"] is None else f"{s['share']:.1%} of {STEP_NAMES[s['of']]}",
                ]
                for s in doc["funnel"]
            ],
        )
    )
    kinds = doc["kinds"]
    parts.append(
        table(
            "Per rule and period",
            [
                "rule / period",
                "entrants",
                "winners",
                "held out",
                "granted",
                "told",
                "fulfilled",
                "overdue",
                *kinds,
                "money",
            ],
            [
                [
                    f"{p['rule_id']} {p['period']}",
                    p["entrants"],
                    p["winners"],
                    p["held_out"],
                    p["grants"].get("granted", 0),
                    p.get("told"),  # None (—): notify not asked
                    p["fulfilment"].get("fulfilled", 0),
                    p["fulfilment"].get("overdue", 0),
                    *(p["units"].get(k, 0) for k in kinds),
                    money_cell(p["money_fen"], p["money_fen_total"]),
                ]
                for p in doc["periods"]
            ],
        )
    )
    t = doc["totals"]
    parts.append(
        table(
            "Cost (unit prices in fen: "
            + (", ".join(f"{k} {v:g}" for k, v in doc["unit_prices"].items()) or "none")
            + ")",
            ["kind", "units granted", "money"],
            [[k, n, yuan(t["money_fen"].get(k))] for k, n in t["units"].items()]
            + [
                ["total", None, money_cell(t["money_fen"], t["money_fen_total"])],
                ["of which fulfilled", None, yuan(t["money_fen_fulfilled"])],
            ],
        )
    )
    notices = doc.get("notices")
    if notices:
        rows = [[r["status"], r["reason"] or "", r["n"]] for r in notices.get("reasons") or []]
        parts.append(table("Notices by status and reason", ["status", "reason", "notices"], rows))
    else:
        parts.append("Notices: unknown (notify not reachable)\n")
    u = doc["uplift"]
    ci = "—" if u["ci_low"] is None else f"[{u['ci_low']:+.2f}, {u['ci_high']:+.2f}]"
    parts.append(
        table(
            f"Uplift of next-period {u['metric']} (holdout {doc['holdout']['percent']}%)",
            ["group", "n", "mean"],
            [
                ["treated", u["n_treated"], u["mean_treated"]],
                ["held out", u["n_held_out"], u["mean_held_out"]],
            ],
        )
        + f"difference {_cell(u['difference'])}, 95% CI {ci}"
        + (" — significant\n" if u["significant"] else "\n")
    )
    printed = Printed("\n".join(parts))
    printed.charts, printed.notes = _campaign_charts(doc, out_dir)
    return printed


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _campaign_charts(doc: dict[str, Any], out_dir: Path) -> tuple[list[Path], list[str]]:
    plt = _pyplot()
    if plt is None:
        return [], ["charts skipped: matplotlib is not installed (pip install matplotlib)"]
    out_dir.mkdir(parents=True, exist_ok=True)
    cid = doc["campaign_id"]
    paths: list[Path] = []

    steps = [s for s in doc["funnel"] if s["users"] is not None]
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.barh([STEP_NAMES[s["step"]] for s in steps][::-1],
                   [s["users"] for s in steps][::-1], color="#3b7dd8")  # fmt: skip
    ax.bar_label(bars, labels=[f"{s['users']:,}" for s in steps][::-1], padding=3)
    ax.set_title(f"{doc['name']}: funnel ({doc['from']} … {doc['to']})")
    ax.set_xlabel("users")
    paths.append(_save(fig, plt, out_dir / f"{cid}-funnel.png"))

    u = doc["uplift"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    means = [u["mean_treated"] or 0, u["mean_held_out"] or 0]
    left.bar(["treated", "held out"], means, color=["#3b7dd8", "#999999"])
    left.set_title(f"next-period {u['metric']}: means")
    for i, (m, n) in enumerate(zip(means, [u["n_treated"], u["n_held_out"]], strict=True)):
        left.annotate(f"{m:.1f}\nn={n:,}", (i, m), ha="center", va="bottom")
    if u["difference"] is not None and u["ci_low"] is not None:
        d = u["difference"]
        right.errorbar([0], [d], yerr=[[d - u["ci_low"]], [u["ci_high"] - d]], fmt="o",
                       capsize=8, color="#d8573b")  # fmt: skip
        right.annotate(f"{d:+.2f}\n[{u['ci_low']:+.2f}, {u['ci_high']:+.2f}]", (0, d),
                       xytext=(12, 0), textcoords="offset points", va="center")  # fmt: skip
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks([])
    right.set_xlim(-1, 1.5)
    right.set_title("uplift (treated − held out), 95% CI")
    paths.append(_save(fig, plt, out_dir / f"{cid}-uplift.png"))

    spend = _spend_by_period(doc["periods"])
    if spend:
        fig, ax = plt.subplots(figsize=(8, 4))
        for kind, pts in sorted(spend.items()):
            ax.step([d for d, _ in pts], [n for _, n in pts], where="post", marker=".",
                    label=kind)  # fmt: skip
        for b in doc["budgets"]:
            ax.axhline(b["total"], linestyle="--", linewidth=0.8, color="grey")
            ax.annotate(f"budget {b['kind']}", (0.01, b["total"]), xycoords=("axes fraction",
                        "data"), va="bottom", fontsize=8, color="grey")  # fmt: skip
        ax.set_title(f"{doc['name']}: units granted, cumulative by period (budget dashed)")
        ax.set_ylim(bottom=0)
        ax.legend()
        fig.autofmt_xdate()
        paths.append(_save(fig, plt, out_dir / f"{cid}-budget.png"))
    return paths, []


def _spend_by_period(periods: list[dict[str, Any]]) -> dict[str, list[tuple[date, int]]]:
    """Granted units per kind, cumulative over the periods' first days (a period of the whole
    campaign has no day and is left out): how the campaign spent over its window, whenever the
    grants were recorded (a backfill records a month of grants in one day)."""
    by_day: dict[str, dict[date, int]] = {}
    for p in periods:
        try:
            _, first = label_first_day(p["period"])
        except ValueError:  # `campaign`: no day of its own
            continue
        for kind, n in p["units"].items():
            days = by_day.setdefault(kind, {})
            days[first] = days.get(first, 0) + int(n)
    out: dict[str, list[tuple[date, int]]] = {}
    for kind, days in by_day.items():
        total, pts = 0, []
        for d in sorted(days):
            total += days[d]
            pts.append((d, total))
        out[kind] = pts
    return out

    return None


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- month --------------------------------------------------------------------------------------


async def fetch_month(urls: dict[str, str], key: str, month: str, today: date) -> dict[str, Any]:
    """Scoring's month KPIs overall, by province and by client, and each day's so far."""
    headers = {"Authorization": f"Bearer {key}"}
    first = date.fromisoformat(f"{month}-01")
    days = calendar.monthrange(first.year, first.month)[1]
    async with httpx.AsyncClient(base_url=urls["scoring"], headers=headers, timeout=60) as c:

        async def get(path: str, **params: Any) -> dict[str, Any]:
            r = await c.get(path, params=params)
            r.raise_for_status()
            doc: dict[str, Any] = r.json()
            return doc

        out: dict[str, Any] = {
            "month": month,
            "all": await get(f"/v1/stats/month/{month}"),
            "province": await get(f"/v1/stats/month/{month}", by="province"),
            "client": await get(f"/v1/stats/month/{month}", by="client"),
            "days": [],
        }
        for n in range(1, days + 1):
            d = first.replace(day=n)
            if d > today:
                break
            out["days"].append(await get(f"/v1/stats/day/{d.isoformat()}"))
    return out


KPI_COLUMNS = ("active_users", "new_users", "messages", "online_hours", "sessions", "checkins")
LIFECYCLE = ("new_users", "returning_users", "resurrecting_users", "dormant_users", "loyal_users")


def render_month(doc: dict[str, Any], out_dir: Path) -> Printed:
    month = doc["month"]
    (overall,) = doc["all"]["items"] or [{}]
    parts = [f"Month {month} (mean DAU over {doc['all']['days_counted']} days)\n"]
    parts.append(
        table(
            "Overall",
            ["KPI", "value"],
            [
                [k, overall.get(k)]
                for k in (*KPI_COLUMNS, *LIFECYCLE[1:], "mau", "dau_mean", "dau_mau")
            ],
        )
    )
    provinces = sorted(doc["province"]["items"], key=lambda i: -i["active_users"])
    parts.append(
        table(
            "By province",
            ["province", *KPI_COLUMNS, "dau/mau"],
            [
                [i["province"], *(i.get(k) for k in KPI_COLUMNS), i.get("dau_mau")]
                for i in provinces
            ],
        )
    )
    parts.append(
        table(
            "By client",
            ["client", "active_users", "messages", "online_hours", "sessions"],
            [
                [i["client"], i["active_users"], i["messages"], i["online_hours"], i["sessions"]]
                for i in doc["client"]["items"]
            ],
        )
    )
    daily = [(d["day"], (d["items"] or [{}])[0]) for d in doc["days"]]
    parts.append(
        table(
            "By day",
            ["day", "active_users", "new_users", "messages", "checkins", "dau/mau"],
            [
                [
                    day,
                    i.get("active_users"),
                    i.get("new_users"),
                    i.get("messages"),
                    i.get("checkins"),
                    i.get("dau_mau"),
                ]
                for day, i in daily
            ],
        )
    )
    printed = Printed("\n".join(parts))
    plt = _pyplot()
    if plt is None:
        printed.notes.append("charts skipped: matplotlib is not installed")
        return printed
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [i["province"] for i in provinces]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [i["active_users"] for i in provinces], 0.4, label="active")
    ax.bar([x + 0.2 for x in xs], [i.get("new_users") or 0 for i in provinces], 0.4, label="new")
    ax.set_xticks(list(xs), names, rotation=45, ha="right")
    ax.set_title(f"{month}: users by province")
    ax.legend()
    printed.charts.append(_save(fig, plt, out_dir / f"month-{month}-provinces.png"))
    if daily:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        days = [date.fromisoformat(day) for day, _ in daily]
        ax.plot(days, [i.get("active_users") or 0 for _, i in daily], marker=".", label="DAU")
        ax.plot(days, [i.get("new_users") or 0 for _, i in daily], marker=".", label="new users")
        ax.plot(days, [i.get("checkins") or 0 for _, i in daily], marker=".", label="check-ins")
        ax.set_title(f"{month}: by day")
        ax.legend()
        fig.autofmt_xdate()
        printed.charts.append(_save(fig, plt, out_dir / f"month-{month}-days.png"))
    fig, ax = plt.subplots(figsize=(7, 4))
    values = [overall.get(k) or 0 for k in LIFECYCLE]
    bars = ax.bar([k.removesuffix("_users") for k in LIFECYCLE], values, color="#3b7dd8")
    ax.bar_label(bars, labels=[f"{v:,}" for v in values])
    ax.set_title(f"{month}: lifecycle")
    printed.charts.append(_save(fig, plt, out_dir / f"month-{month}-lifecycle.png"))
    return printed


def default_out_dir() -> Path:
    return Path("var") / "reports" / datetime.now().strftime("%Y-%m-%d")


async def demo_reports(
    urls: dict[str, str], key: str, month: str, campaign_id: str, out_dir: Path
) -> Printed:
    """What the demo ends with: the month's report and one campaign's."""
    today = datetime.now().date()
    by_month = render_month(await fetch_month(urls, key, month, today), out_dir)
    by_campaign = render_campaign(await fetch_campaign(urls, key, campaign_id, None, None), out_dir)
    return Printed(
        f"{by_month.text}\n{by_campaign.text}",
        by_month.charts + by_campaign.charts,
        by_month.notes + by_campaign.notes,
    )
