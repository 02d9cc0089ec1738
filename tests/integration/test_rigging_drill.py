"""The rigging drill (engage/simulator/rigging.py, SPEC §14) against a real stack through ingest:
each red-team request of issue 17 refused — by ingest or by scoring's group-fact rules — and
each rigger the rules cannot refuse flagged; the owner's group keeps its owner, province and
life. The drill is what `engage simulate --rigging` and the demo run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engage.demo import simulate_through_ingest, user_tokens
from engage.progress import wait_consumed
from engage.simulator.rigging import Drill, pick_targets, render, run_drill
from engage.simulator.world import SimConfig, World
from engage.stack import Stack
from shared.topics import EVENTS_TOPIC
from tests.integration.conftest import issue_keys, own_stack

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def drill_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from own_stack(tmp_path_factory, "rigging")


async def test_every_rigging_attempt_is_refused_or_flagged(drill_stack: Stack) -> None:
    for name in ("ingest", "scoring"):
        drill_stack.start_service(name)
    keys = await issue_keys(drill_stack)
    config = SimConfig(seed=3, users=300, groups=30)
    now = datetime.now(UTC)
    issuer = drill_stack.user_token_issuer()
    urls = {n: s.url for n, s in drill_stack.services.items()}
    await simulate_through_ingest(
        urls["ingest"], keys.platform, keys.importer, config, now, user_tokens(issuer.mint)
    )
    assert drill_stack.database_url and drill_stack.kafka_bootstrap
    await wait_consumed(
        drill_stack.database_url, drill_stack.kafka_bootstrap, "scoring", EVENTS_TOPIC
    )
    world = World.build(config)
    targets = pick_targets(world.groups, world.users)
    drill = Drill(
        urls,
        keys.platform,
        keys.viewer,
        keys.ingest,
        issuer.mint,
        ZoneInfo("Asia/Shanghai"),
        prefix="drill",
    )
    result = await run_drill(drill, targets, enroll_campaign=None)
    print(render(result.attempts))
    failed = [a for a in result.attempts if not a.ok]
    assert not failed, render(failed)
    # Every hijack of the issue is in the drill, and every flag has its rigger.
    assert sum("refused" in a.expect for a in result.attempts) >= 8
    flags = {a.expect.removeprefix("flagged ") for a in result.attempts if "flagged" in a.expect}
    assert flags == {"message_rate", "points_spike", "lockstep", "late_joins", "dominant_member"}
