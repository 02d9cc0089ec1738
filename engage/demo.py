"""`engage demo`: the whole pipeline from nothing on the embedded default, then a summary."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from engage.demo_campaigns import (
    ENROLLING,
    CampaignKeys,
    campaign_examples,
    campaign_window,
    enroll_groups,
    fulfil_through_topic,
    group_owners,
    launch_campaigns,
    print_campaigns,
    print_fulfilment,
    settle_now,
)
from engage.demo_notify import (
    broadcast_to_segment,
    open_window,
    print_every_winner_told,
    print_notices,
    render_broadcast,
    wait_notices,
)
from engage.demo_review import render as render_review
from engage.demo_review import review_period
from engage.progress import wait_consumed, wait_keys_known, wait_outbox_empty, wait_processed
from engage.report import demo_reports
from engage.simulator.client import PostReport, post_as_clients, post_events
from engage.simulator.rigging import Drill, pick_targets, run_drill
from engage.simulator.rigging import render as render_drill
from engage.simulator.world import (
    SimConfig,
    World,
    deliveries,
    generate,
    month_start,
    previous_month,
)
from engage.stack import Stack
from engage.topic_audit import tally_topic
from services.ingest.admin import issue_api_key
from services.ingest.domain.authority import USER_TOKEN_EVENT_TYPES
from shared.auth import Role
from shared.contract import PROVINCES
from shared.topics import EVENTS_TOPIC, FULFILMENT_TOPIC

Event = dict[str, Any]


def split_months(config: SimConfig, now: datetime) -> tuple[list[Event], list[Event]]:
    """The simulated events of last month in full, and of this month up to `now`."""
    tz = ZoneInfo(config.timezone)
    this_month = month_start(now.astimezone(tz).date())
    boundary = datetime(this_month.year, this_month.month, 1, tzinfo=tz)
    events = generate(World.build(config), previous_month(this_month), now)
    history: list[Event] = []
    live: list[Event] = []
    for event in events:
        (history if datetime.fromisoformat(event["occurred_at"]) < boundary else live).append(event)
    return history, live


ClientCredential = Callable[[str], str]


def user_tokens(mint: Callable[[str], str]) -> ClientCredential:
    """Each user's token, minted once (a client app holds one for its session)."""
    tokens: dict[str, str] = {}

    def credential(user_id: str) -> str:
        if user_id not in tokens:
            tokens[user_id] = mint(user_id)
        return tokens[user_id]

    return credential


async def simulate_through_ingest(
    ingest_url: str,
    platform_key: str,
    import_key: str,
    config: SimConfig,
    now: datetime,
    client_credential: ClientCredential | None = None,
) -> tuple[PostReport, PostReport]:
    """Last month in full through the import endpoint, then this month to date live: the
    users' own events with `client_credential(user_id)` (their user token, or a relay key),
    the IM platform's (points, bonus cards, group facts) with the platform key (SPEC §14).
    Without `client_credential` the platform key posts everything."""
    history, live = split_months(config, now)

    def credential(event: Event) -> str:
        if client_credential is not None and event["type"] in USER_TOKEN_EVENT_TYPES:
            return client_credential(event["user_id"])
        return platform_key

    imported = await post_events(
        ingest_url,
        import_key,
        deliveries(history, config),
        path="/v1/events:import",
        batch_size=500,
        label="last month",
    )
    posted = await post_as_clients(
        ingest_url, credential, deliveries(live, config), batch_size=100, label="this month"
    )
    return imported, posted


async def print_leaderboards(
    scoring_url: str, key: str, month: str, top: int = 3
) -> dict[str, list[dict[str, Any]]]:
    """The top groups of the provinces with the most groups, through the read API; the boards
    by province."""
    boards: dict[str, list[dict[str, Any]]] = {}
    async with httpx.AsyncClient(
        base_url=scoring_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        for province in PROVINCES:
            r = await client.get(f"/v1/leaderboards/{month}/{province}", params={"limit": 500})
            r.raise_for_status()
            if r.json()["items"]:
                boards[province] = r.json()["items"]
    print(
        f"\nLeaderboards {month} (default weights; {sum(map(len, boards.values()))} ranked groups"
        f" in {len(boards)} provinces; the 4 largest shown)"
    )
    for province, items in sorted(boards.items(), key=lambda kv: -len(kv[1]))[:4]:
        print(
            f"  {province}: "
            + "   ".join(
                f"#{i['rank']} {i['group_id']} vitality {i['vitality']:,.0f} "
                f"({i['active_members']}/{i['members']} active)"
                for i in items[:top]
            )
        )
    return boards


def _row(label: str, value: object) -> str:
    return f"  {label:<34} {value}"


Observer = Callable[[Stack], AbstractAsyncContextManager[None]]


async def run_demo(
    users: int,
    groups: int,
    seed: int,
    keep_running: bool,
    stack: Stack | None = None,
    observe: Observer | None = None,
) -> int:
    """The whole demo; `observe` (e.g. a Prometheus scraping it) is entered once every service
    is up and left, with the services still running, when the demo is done."""
    stack = stack or Stack.from_env()
    print(
        "Engage demo — embedded default (local Kafka-protocol broker + embedded PostgreSQL)"
        if not os.environ.get("ENGAGE_KAFKA_BOOTSTRAP")
        else "Engage demo"
    )
    try:
        stack.start_infra()
        print(_row("broker", stack.kafka_bootstrap))
        print(_row("database", stack.database_url))
        stack.start_service("ingest")
        stack.start_service("scoring")
        # Settlement on demand: last month is due at once, so it waits until it is loaded.
        stack.start_service("rewards", env={"REWARDS_SETTLE_INTERVAL_S": "0"})
        stack.start_service("notify", env=await asyncio.to_thread(stack.notify_segments_env))
        async with observe(stack) if observe else contextlib.nullcontext():
            return await _pipeline(stack, users, groups, seed, keep_running)
    finally:
        stack.stop()


async def _pipeline(stack: Stack, users: int, groups: int, seed: int, keep_running: bool) -> int:
    ingest, scoring = stack.services["ingest"], stack.services["scoring"]
    rewards, notify = stack.services["rewards"], stack.services["notify"]
    url, bootstrap = stack.database_url, stack.kafka_bootstrap
    assert url is not None and bootstrap is not None

    async def key(name: str, *roles: Role) -> str:
        return (await issue_api_key(url, name, list(roles), 1e6, bootstrap)).secret

    platform_key = await key("im-platform", Role.PLATFORM)
    import_key = await key("backfill", Role.IMPORTER)
    issuer = stack.user_token_issuer()
    client_tokens = user_tokens(issuer.mint)
    viewer = await key("demo-viewer", Role.VIEWER)
    campaign_keys = CampaignKeys(
        owner=await key("marketing", Role.CAMPAIGN_OWNER),
        approver=await key("marketing-lead", Role.APPROVER),
        admin=await key("ops", Role.ADMIN),
    )
    config = SimConfig(seed=seed, users=users, groups=groups)
    now = datetime.now(UTC)
    tz = ZoneInfo(os.environ.get("ENGAGE_TIMEZONE", "Asia/Shanghai"))
    await wait_keys_known(rewards.url, "/v1/templates", [viewer, *vars(campaign_keys).values()])
    await wait_keys_known(notify.url, "/v1/policies", [viewer, campaign_keys.admin])
    await open_window(notify.url, campaign_keys.admin)
    starts_at, ends_at = campaign_window(now, tz)
    campaigns = await launch_campaigns(rewards.url, campaign_keys, starts_at, ends_at)
    print(
        f"Six campaigns created from templates, approved by a second principal and active "
        f"for {starts_at:%Y-%m-%d} – {ends_at:%Y-%m-%d}"
    )
    print(
        f"Simulating {users:,} users in {groups:,} groups (seed {seed}): last month in full "
        "through POST /v1/events:import, this month to date through POST /v1/events — each "
        "user's events with their own user token (minted by the local issuer, "
        f"{issuer.jwks_path}), the platform's with a platform key"
    )
    imported, posted = await simulate_through_ingest(
        ingest.url, platform_key, import_key, config, now, client_tokens
    )
    total = PostReport()
    total.merge(imported)
    total.merge(posted)
    tally = await tally_topic(bootstrap, EVENTS_TOPIC)

    print("\nSummary")
    print(_row("deliveries posted (with resends)", f"{total.sent:,}"))
    print(_row("  answered accepted", f"{total.accepted:,}"))
    print(_row("  answered rejected", f"{total.rejected:,} {dict(total.rejections)}"))
    print(_row("  retried after 429/503", f"{total.retries:,}"))
    print(_row("distinct events accepted", f"{total.unique_accepted:,}"))
    print(
        _row(
            "ingest rate (import / live)",
            f"{imported.sent / imported.seconds:,.0f} / {posted.sent / posted.seconds:,.0f}"
            " events/s",
        )
    )
    print(_row(f"records on {EVENTS_TOPIC}", f"{tally.records:,}"))
    missing = total.accepted_ids - tally.event_ids
    print(
        _row(
            "distinct event ids on the topic",
            f"{len(tally.event_ids):,} (accepted but missing: {len(missing)})",
        )
    )
    print("  events by type (distinct, on the topic):")
    for kind, count in sorted(tally.by_type.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:<18} {count:>9,}")
    caught_up = await wait_processed(url, len(total.accepted_ids))
    print(
        _row(
            "scoring caught up",
            f"{len(total.accepted_ids):,} distinct events, {caught_up:.1f}s after the last post",
        )
    )
    this_month = month_start(now.astimezone(tz).date())
    boards = {}
    for month in (previous_month(this_month), this_month):
        boards[month] = await print_leaderboards(scoring.url, viewer, month.strftime("%Y-%m"))

    # What a prize hunter tries (SPEC §14): refused at ingest or by scoring, or flagged.
    relay_key = await key("im-relay", Role.INGEST)
    urls = {"ingest": ingest.url, "scoring": scoring.url, "rewards": rewards.url}
    drill = Drill(urls, platform_key, viewer, relay_key, issuer.mint, tz, now)
    world = World.build(config)
    targets = pick_targets(world.groups, world.users)
    drilled = await run_drill(drill, targets, campaigns["my_fetion_my_group"])
    print("\n" + render_drill(drilled.attempts))

    await wait_outbox_empty(url, "scoring", "changelog_outbox")
    await wait_consumed(url, bootstrap, "rewards", "engage.metrics.v1")
    history, current = split_months(config, now)
    owners = {**group_owners(history + current), **drilled.rigged_owners}
    enrolled = await enroll_groups(
        rewards.url,
        client_tokens,
        [campaigns[t] for t in ENROLLING],
        owners,
    )
    print(
        "\nGroups enrolled by their owners, each with their own user token "
        f"(HTTP status: count; 409 = dissolved): {enrolled}"
    )
    settled = await settle_now(rewards.url, campaign_keys.admin)
    # "My Fetion" is reviewed: its month waits as held grants until a second approver looks.
    reviewer = await key("prize-review", Role.APPROVER)
    await wait_keys_known(rewards.url, "/v1/templates", [reviewer])
    last_month = previous_month(this_month).strftime("%Y-%m")
    reviewed = await review_period(
        rewards.url, viewer, reviewer, campaigns["my_fetion_my_group"], last_month
    )
    print(render_review(reviewed, "My Fetion, my group", last_month))
    # The new-friend draw counts "My Fetion" members' tickets: it waited for the release.
    after_review = await settle_now(rewards.url, campaign_keys.admin)
    settled["settled"] += after_review["settled"]
    verified = await print_campaigns(rewards.url, viewer, campaigns, settled)
    plan = await fulfil_through_topic(rewards.url, viewer, bootstrap, campaigns)
    await wait_consumed(url, bootstrap, "rewards", FULFILMENT_TOPIC)
    await print_fulfilment(rewards.url, viewer, campaigns, plan)
    notices = await wait_notices(url, bootstrap, notify.url, viewer)
    await print_notices(
        notify.url, viewer, notices, await campaign_examples(rewards.url, viewer, campaigns)
    )
    told = await print_every_winner_told(url)
    # A notice to a segment (SPEC §6): last month's top groups of the province with most groups.
    last_boards = boards[previous_month(this_month)]
    broadcast = None
    if last_boards:
        province = max(last_boards.items(), key=lambda kv: len(kv[1]))[0]
        broadcast = await broadcast_to_segment(
            notify.url, (campaign_keys.owner, campaign_keys.approver, campaign_keys.admin),
            previous_month(this_month).strftime("%Y-%m"), province,
        )  # fmt: skip
        print(render_broadcast(broadcast))
    else:
        print("\nBroadcast to a segment: skipped (no group was ranked last month)")
    # The morning after (SPEC §12): last month's report and one campaign's, with their charts.
    reports = await demo_reports(
        {"scoring": scoring.url, "rewards": rewards.url, "notify": notify.url},
        viewer,
        last_month,
        campaigns["daily_checkin_draw"],
        Path(stack.var_dir) / "reports",
    )
    print(f"\nReports (engage report month {last_month}; engage report campaign "
          f"{campaigns['daily_checkin_draw']})\n")  # fmt: skip
    print(reports.text)
    for note in reports.notes:
        print(f"  {note}")
    print("  PNG charts:")
    for chart in reports.charts:
        print(f"    {chart}")
    print("\nServices")
    for service in stack.services.values():
        print(f"  {service.name:<8} docs {service.url}/docs   metrics {service.url}/metrics")
    print(f"  logs under {Path(stack.var_dir) / 'logs'}")
    if keep_running:
        print("\nRunning; Ctrl-C stops everything.")
        await asyncio.Event().wait()
    ok = not missing and tally.keyed_by_user and verified and told and drilled.ok
    ok = ok and (broadcast is None or broadcast.recipients > 0)
    return 0 if ok else 1
