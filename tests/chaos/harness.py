"""The whole pipeline on one machine with faults in reach: every service talks to the broker and
to PostgreSQL through a FaultProxy, notify sends to a local IM platform that records every
message it receives, and the simulator posts a seeded month and a half through ingest.

One `Pipeline` per scenario (own broker, own database): a scenario's faults cannot leak into
the next one, and its checker sees only its own events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from engage.demo import split_months
from engage.demo_campaigns import CampaignKeys, campaign_window, launch_campaigns
from engage.demo_notify import ALWAYS_OPEN
from engage.dlq import dead_letters
from engage.progress import (
    count_rows,
    processed_events,
    stored_offsets,
    wait_consumed,
    wait_keys_known,
    wait_notices_ended,
    wait_outbox_empty,
    wait_processed,
)
from engage.runtime import EmbeddedBroker, EmbeddedPostgres, free_port
from engage.simulator.client import PostReport, post_events
from engage.simulator.world import SimConfig, deliveries
from engage.stack import ServiceProcess, Stack
from services.ingest.admin import issue_api_key
from shared.auth import Role
from shared.contract import encode_envelope
from shared.topics import EVENTS_DLQ, EVENTS_TOPIC
from shared.topics import GRANTS_TOPIC as GRANTS
from shared.topics import METRICS_TOPIC as METRICS
from tests.chaos.proxy import FaultProxy
from tests.reference import scoring_model as ref

# Small enough for CI (≈ 30k deliveries incl. 3% resends, shuffled), big enough for many
# consumer batches between faults.
CONFIG = SimConfig(seed=20261122, users=250, groups=20, duplicate_rate=0.03, shuffle_window=2000)
# The two live campaigns: their grants are decided while metrics stream in, so faults hit them.
CAMPAIGNS = ("play_and_get_gifts", "invite_friends")
DAILY_CAP = 1  # reward notices per user and local day: users with two grants get one message
CONSUMERS = ("scoring", "rewards", "notify")


@dataclass
class Receipt:
    message_id: str
    user_id: str
    received_at: datetime


class ImPlatform:
    """The IM platform's webhook: answers 200 and remembers every request (a thread of its own,
    so it answers while the test's loop is busy)."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self._lock = threading.Lock()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with platform._lock:
                    platform.receipts.append(
                        Receipt(str(doc["message_id"]), doc["user_id"], datetime.now(UTC))
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # notify has 32 sends in flight; the default backlog is 5
            daemon_threads = True

        self._server = Server(("127.0.0.1", free_port()), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/messages"

    def start(self) -> ImPlatform:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Receipt]:
        with self._lock:
            return list(self.receipts)


@dataclass
class Pipeline:
    stack: Stack
    broker: EmbeddedBroker
    postgres: EmbeddedPostgres
    broker_proxy: FaultProxy
    db_proxy: FaultProxy
    im: ImPlatform
    env: dict[str, dict[str, str]]
    keys: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    history: list[dict[str, Any]] = field(default_factory=list)  # last month, distinct
    live: list[dict[str, Any]] = field(default_factory=list)  # this month to date, distinct
    to_post: list[list[dict[str, Any]]] = field(default_factory=list)  # with resends, shuffled
    reports: list[PostReport] = field(default_factory=lambda: [PostReport(), PostReport()])
    restarts: dict[str, int] = field(default_factory=dict)
    poison: set[str] = field(default_factory=set)  # event ids forced onto the topic past intake

    @property
    def url(self) -> str:
        """The database, directly (not through the proxy): for the checker and the triggers."""
        assert self.stack.database_url
        return self.stack.database_url

    @property
    def bootstrap(self) -> str:
        assert self.stack.kafka_bootstrap
        return self.stack.kafka_bootstrap

    def service(self, label: str) -> ServiceProcess:
        return self.stack.services[label]

    async def start(self, name: str, instance: str = "") -> ServiceProcess:
        """Start a service (in a thread: the loop keeps posting while it comes up)."""
        return await asyncio.to_thread(
            self.stack.start_service, name, env=self.env[name], instance=instance
        )

    async def kill(self, label: str, sig: int = signal.SIGKILL) -> None:
        svc = self.service(label)
        svc.signal(sig)
        await asyncio.to_thread(svc.proc.wait)

    async def crash_and_restart(self, name: str, instance: str = "") -> None:
        await self.kill(f"{name}{instance}")
        self.restarts[name] = self.restarts.get(name, 0) + 1
        await self.start(name, instance)

    # -- progress, read from the services' own tables --------------------------------------
    async def scoring_applied(self) -> int:
        return await processed_events(self.url, "scoring")

    async def rewards_consumed(self) -> int:
        return sum((await stored_offsets(self.url, "rewards", METRICS)).values())

    async def notices(self) -> int:
        return await count_rows(self.url, "SELECT count(*) FROM notify.notifications") or 0

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.history + self.live

    def accepted(self) -> set[str]:
        return self.reports[0].accepted_ids | self.reports[1].accepted_ids

    def posted(self) -> int:
        return self.reports[0].sent + self.reports[1].sent

    def share_posted(self) -> float:
        return self.posted() / sum(map(len, self.to_post))

    def retries(self) -> int:
        return self.reports[0].retries + self.reports[1].retries

    # -- the run ----------------------------------------------------------------------------
    async def force_poison(self) -> None:
        """Records no intake accepts, produced straight onto the events topic mid-stream: the
        import that once stopped scoring for good, and a local time beyond year 9999. Scoring
        must dead-letter them and apply everything else exactly once (issue 13)."""
        received = datetime.now(UTC).isoformat()
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for i, stamp in enumerate(("0001-01-01T00:00:00+14:00", "9999-12-31T20:00:00Z")):
                event = {"event_id": f"00000000-0000-4000-8000-{i:012d}", "type": "message",
                         "occurred_at": stamp, "user_id": f"poison{i}", "client": "pc"}  # fmt: skip
                await producer.send_and_wait(
                    EVENTS_TOPIC,
                    encode_envelope(event, received, "chaos", "platform"),
                    key=b"poison%d" % i,
                )
                self.poison.add(event["event_id"])
        finally:
            await producer.stop()

    async def dead_lettered(self) -> list[str]:
        """Event ids in scoring's DLQ (a record may be there twice: the DLQ is at-least-once)."""
        letters = await dead_letters(self.bootstrap, (EVENTS_DLQ,))
        return [str(orjson.loads(d.value)["event_id"]) for d in letters if d.group == "scoring"]

    async def post_all(self) -> None:
        """Last month through the import endpoint, this month live; retried with the same ids."""
        await post_events(
            self.service("ingest").url, self.keys["importer"], self.to_post[0],
            path="/v1/events:import", batch_size=500, label="last month", progress=False,
            report=self.reports[0], max_attempts=200,
        )  # fmt: skip
        await post_events(
            self.service("ingest").url, self.keys["live"], self.to_post[1],
            batch_size=100, label="this month", progress=False, report=self.reports[1],
            max_attempts=200,
        )  # fmt: skip

    async def drain(self, timeout_s: float = 240) -> None:
        """Wait until every accepted event went all the way: applied, published, consumed,
        granted, published, consumed and every notice ended."""
        await wait_processed(self.url, len(self.accepted()), "scoring", timeout_s)
        await wait_consumed(self.url, self.bootstrap, "scoring", EVENTS_TOPIC, timeout_s)
        await wait_outbox_empty(self.url, "scoring", "changelog_outbox", timeout_s)
        await wait_consumed(self.url, self.bootstrap, "rewards", METRICS, timeout_s)
        await wait_outbox_empty(self.url, "rewards", "grants_outbox", timeout_s)
        await wait_consumed(self.url, self.bootstrap, "notify", GRANTS, timeout_s)
        await wait_notices_ended(self.url, timeout_s)

    def stop(self) -> None:
        self.stack.stop()
        self.broker_proxy.stop()
        self.db_proxy.stop()
        self.im.stop()


def riggers(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Riggers among the ordinary users, so the flags compared under faults are not all absent
    (SPEC §14): last month a points farmer and a group whose members join in its last days,
    this month a bot typing 70 messages in one minute."""
    today = now.astimezone(ref.TZ).date()
    last_month_end = today.replace(day=1) - timedelta(days=1)
    first = last_month_end.replace(day=1)

    def at(day: date, hour: int, second: int = 0) -> str:
        return (datetime.combine(day, dt_time(hour), tzinfo=ref.TZ) + timedelta(seconds=second)
                ).isoformat()  # fmt: skip

    def event(kind: str, user: str, when: str, **fields: Any) -> dict[str, Any]:
        return {"event_id": str(uuid.uuid4()), "type": kind, "occurred_at": when,
                "user_id": user, **fields}  # fmt: skip

    history = [event("points", "chaos-farmer", at(first + timedelta(days=d), 12), delta=20)
               for d in range(20)]  # fmt: skip
    history.append(event("points", "chaos-farmer", at(first + timedelta(days=21), 12), delta=5000))
    history.append(event("group_created", "chaos-late-0", at(first, 9), group_id="chaos-late",
                         name="Late joiners", province="GD"))  # fmt: skip
    late = last_month_end - timedelta(days=1)
    history += [event("group_join", f"chaos-late-{k}", at(late, 20, k), group_id="chaos-late")
                for k in range(1, 13)]  # fmt: skip
    minute = (now - timedelta(hours=3)).replace(second=0, microsecond=0)
    live = [event("message", "chaos-bot", (minute + timedelta(seconds=k * 0.8)).isoformat(),
                  client="mobile") for k in range(70)]  # fmt: skip
    return history, live


async def until(
    probe: Callable[[], Awaitable[int]],
    done: Callable[[int], bool],
    timeout_s: float,
    what: str,
) -> int:
    """Poll `probe` until `done(value)`; fail with the last value after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not done(value := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} ({value})")
        await asyncio.sleep(0.1)
    return value


async def build(var_dir: Path) -> Pipeline:
    """Broker and database behind proxies, the four services, keys, policy and campaigns."""
    broker_port = free_port()
    broker_proxy = FaultProxy(target_port=broker_port, name="broker-proxy").start()
    broker = EmbeddedBroker(
        port=broker_port, advertised_port=broker_proxy.port, log_path=var_dir / "broker.log"
    ).start()
    stack = Stack(var_dir=var_dir, fixed_ports=False, kafka_bootstrap=broker.bootstrap)
    stack.broker = broker
    stack.start_infra()
    assert stack.postgres is not None and stack.database_url
    postgres = stack.postgres
    db_proxy = FaultProxy(target_port=postgres.port, name="db-proxy").start()
    proxied = stack.database_url.replace(f":{postgres.port}/", f":{db_proxy.port}/")
    im = ImPlatform().start()
    # A frozen process's open transaction is ended after 5 s (production default 60 s), so a
    # paused replica cannot block the one that takes its partitions for long.
    common = {"ENGAGE_DATABASE_URL": proxied, "ENGAGE_DB_IDLE_IN_TRANSACTION_S": "5"}
    env = {
        "ingest": common | {"INGEST_BROKER_ACK_TIMEOUT_S": "2"},
        "scoring": common | {"SCORING_MAX_BATCH_RECORDS": "500"},
        "rewards": common | {"REWARDS_SETTLE_INTERVAL_S": "0", "REWARDS_MAX_BATCH_RECORDS": "500"},
        "notify": common
        | {
            "NOTIFY_IM_WEBHOOK_URL": im.url,
            "NOTIFY_SENDING_LEASE_S": "8",
            "NOTIFY_RETRY_BASE_S": "0.2",
            "NOTIFY_MAX_ATTEMPTS": "50",
        },
    }
    pipe = Pipeline(stack, broker, postgres, broker_proxy, db_proxy, im, env)
    pipe.history, pipe.live = split_months(CONFIG, pipe.started_at)
    extra_history, extra_live = riggers(pipe.started_at)
    pipe.history += extra_history
    pipe.live += extra_live
    pipe.to_post = [deliveries(pipe.history, CONFIG), deliveries(pipe.live, CONFIG)]
    try:
        for name in ("ingest", *CONSUMERS):
            await pipe.start(name)
        await _configure(pipe)
    except BaseException:
        pipe.stop()
        raise
    return pipe


async def _configure(pipe: Pipeline) -> None:
    roles = {
        "live": [Role.PLATFORM], "importer": [Role.IMPORTER], "owner": [Role.CAMPAIGN_OWNER],
        "approver": [Role.APPROVER], "admin": [Role.ADMIN], "viewer": [Role.VIEWER],
    }  # fmt: skip
    for name, rs in roles.items():
        pipe.keys[name] = (await issue_api_key(pipe.url, name, rs, 1e6, pipe.bootstrap)).secret
    readers = [pipe.keys[n] for n in ("owner", "approver", "admin", "viewer")]
    await wait_keys_known(pipe.service("rewards").url, "/v1/templates", readers)
    await wait_keys_known(pipe.service("notify").url, "/v1/policies", [pipe.keys["admin"]])
    await wait_keys_known(pipe.service("scoring").url, "/v1/profiles", [pipe.keys["viewer"]])
    async with httpx.AsyncClient(
        base_url=pipe.service("notify").url,
        headers={"Authorization": f"Bearer {pipe.keys['admin']}"},
        timeout=30,
    ) as c:
        body = {"daily_cap": DAILY_CAP, "ttl_seconds": 86400, "marketing": False, **ALWAYS_OPEN}
        (await c.put("/v1/policies/reward", json=body)).raise_for_status()
    starts_at, ends_at = campaign_window(pipe.started_at, ref.TZ)
    keys = CampaignKeys(pipe.keys["owner"], pipe.keys["approver"], pipe.keys["admin"])
    pipe.campaigns = await launch_campaigns(
        pipe.service("rewards").url, keys, starts_at, ends_at, CAMPAIGNS
    )


@contextlib.asynccontextmanager
async def pipeline(var_dir: Path) -> Any:
    pipe = await build(var_dir)
    try:
        yield pipe
    finally:
        pipe.stop()
