"""One record a consumer cannot apply never stops its partition (SPEC §16, issue 13).

Records are produced straight onto the topics — past every intake check — into one partition,
a poison record between good ones, so they arrive in one batch. The poison record must land in
the service's DLQ with its reason and origin; every good record must be applied exactly once and
the partition must move on. Rewards' and notify's records have typed contracts
(shared/records.py) that refuse these at decoding; records that fail only inside the
transaction — found by bisecting the batch — are scoring's case, with the reference check, in
test_scoring_reference.py. The classification of real PostgreSQL errors is checked here too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engage.dlq import DeadLetter, dead_letters
from engage.progress import topic_ends, wait_consumed
from engage.stack import Stack
from engage.topic_audit import read_topic
from shared.failures import DATA, TRANSIENT, UNKNOWN, failure_kind
from shared.metric_fields import DAY_POINTS, USER_DAY_COUNTERS
from shared.topics import GRANTS_TOPIC, METRICS_DLQ, METRICS_TOPIC, NOTIFY_DLQ
from tests.cli import run_engage
from tests.integration.conftest import Keys, issue_keys, own_stack
from tests.integration.notify_support import Deployment, grant

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def poison_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from own_stack(tmp_path_factory, "poison")


@pytest.fixture(scope="module")
async def poison_keys(poison_stack: Stack) -> Keys:
    return await issue_keys(poison_stack)


async def produce_to_partition_0(bootstrap: str, topic: str, records: list[bytes]) -> list[int]:
    """Produce in order to partition 0; the offsets they got."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, r, key=b"k", partition=0) for r in records]
        return [(await f).offset for f in futures]
    finally:
        await producer.stop()


async def letters_of(bootstrap: str, topic: str, group: str) -> list[DeadLetter]:
    return [d for d in await dead_letters(bootstrap, (topic,)) if d.group == group]


async def query(stack: Stack, sql: str) -> list[Any]:
    assert stack.database_url
    conn = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def user_day(user_id: str, messages: int) -> bytes:
    """A complete engage.metrics.v1 user-day record (shared.records.UserDayRecord)."""
    counters = dict.fromkeys((*USER_DAY_COUNTERS, *DAY_POINTS), 0)
    return orjson.dumps(
        {"entity": "user", "grain": "day", "period": "2026-11-20", "id": user_id,
         **counters, "messages": messages, "activity_points": messages}
    )  # fmt: skip


async def test_rewards_dead_letters_a_metric_record_off_contract_and_applies_the_rest(
    poison_stack: Stack,
) -> None:
    stack = poison_stack
    assert stack.kafka_bootstrap and stack.database_url
    schema = "rewards_poison"
    tag = uuid.uuid4().hex[:6]
    good = [f"p{tag}-{i}" for i in range(40)]
    poison = f"p{tag}-nul\x00"  # an id the record's contract (and PostgreSQL) refuses
    records = [user_day(u, i + 1) for i, u in enumerate(good[:20])]
    records.append(user_day(poison, 1))
    records += [user_day(u, i + 21) for i, u in enumerate(good[20:])]
    stack.start_service(
        "rewards",
        instance="-poison",
        env={"REWARDS_SCHEMA_NAME": schema, "REWARDS_CONSUMER_GROUP": schema,
             "REWARDS_SETTLE_INTERVAL_S": "0"},
    )  # fmt: skip
    offsets = await produce_to_partition_0(stack.kafka_bootstrap, METRICS_TOPIC, records)
    await wait_consumed(stack.database_url, stack.kafka_bootstrap, schema, METRICS_TOPIC, 120)

    rows = await query(
        stack, f"SELECT user_id, metrics FROM {schema}.user_day WHERE user_id LIKE 'p{tag}-%'"
    )
    stored = {r["user_id"]: orjson.loads(r["metrics"])["messages"] for r in rows}
    assert stored == {u: float(i + 1) for i, u in enumerate(good)}
    [letter] = await letters_of(stack.kafka_bootstrap, METRICS_DLQ, schema)
    assert (letter.source_topic, letter.source_partition) == (METRICS_TOPIC, 0)
    assert letter.source_offset == offsets[20]
    assert letter.service == "rewards" and letter.value == records[20]
    assert letter.reason.startswith("undecodable:") and "id" in letter.reason, letter.reason


async def test_notify_dead_letters_grant_records_off_contract_and_queues_the_rest(
    poison_stack: Stack, poison_keys: Keys
) -> None:
    stack, keys = poison_stack, poison_keys
    assert stack.kafka_bootstrap and stack.database_url
    schema = "notify_poison"
    d = Deployment(stack, keys, schema, replicas=1)
    await d.ready()
    tag = uuid.uuid4().hex[:6]
    docs = [grant(9_000_000 + i, f"n{tag}-{i}") for i in range(30)]
    docs.insert(15, grant(9_100_000, f"n{tag}-nul\x00"))
    records = [orjson.dumps(doc) for doc in docs]
    records.insert(5, b"{not json")  # undecodable: dead-lettered before the transaction
    offsets = await produce_to_partition_0(stack.kafka_bootstrap, GRANTS_TOPIC, records)
    await wait_consumed(
        stack.database_url, stack.kafka_bootstrap, schema, GRANTS_TOPIC, timeout_s=120
    )

    rows = await query(
        stack, f"SELECT user_id FROM {schema}.notifications WHERE user_id LIKE 'n{tag}-%'"
    )
    assert sorted(r["user_id"] for r in rows) == sorted(
        doc["user_id"] for doc in docs if "\x00" not in doc["user_id"]
    )
    letters = await letters_of(stack.kafka_bootstrap, NOTIFY_DLQ, f"{schema}-grants")
    by_offset = {letter.source_offset or -1: letter for letter in letters}
    assert sorted(by_offset) == [offsets[5], offsets[16]]
    assert by_offset[offsets[5]].reason.startswith("undecodable:")
    assert by_offset[offsets[16]].value == records[16]


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT CAST(:nul AS text)", DATA),  # 22021: a character PostgreSQL cannot store
        ("SELECT date '0001-01-01' - 1000000", DATA),  # 22008: date out of range
        ("SELECT 1 / 0", DATA),  # 22012
        ("CREATE TEMP TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1), (1)", DATA),  # 23505
        ("SELECT * FROM no_such_table", UNKNOWN),  # 42P01: our SQL is wrong, not the record
        ("SELECT pg_terminate_backend(pg_backend_pid())", TRANSIENT),  # the connection is gone
    ],
)
async def test_database_errors_are_classified_by_whether_a_retry_can_help(
    stack: Stack, sql: str, kind: str
) -> None:
    """The errors come from a real PostgreSQL through the services' own driver stack."""
    from sqlalchemy import text

    from shared.db import make_engine

    assert stack.database_url
    engine = make_engine(stack.database_url, "public")
    try:
        async with engine.connect() as conn:
            with pytest.raises(Exception) as raised:  # whichever error: it is classified
                for statement in sql.split("; "):
                    await conn.execute(text(statement), {"nul": "a\x00b"} if ":nul" in sql else {})
        assert failure_kind(raised.value) == kind, repr(raised.value)
    finally:
        await engine.dispose()


async def test_engage_dlq_lists_dead_letters_and_replays_one_onto_its_source(
    poison_stack: Stack,
) -> None:
    """The operator's way back (docs/operations.md#deadlettersgrowing): list, fix, replay."""
    assert poison_stack.kafka_bootstrap
    env = {"ENGAGE_KAFKA_BOOTSTRAP": poison_stack.kafka_bootstrap}
    letters = await dead_letters(poison_stack.kafka_bootstrap, (NOTIFY_DLQ,))
    assert letters, "the notify test above dead-lettered records on this stack"
    code, out = await run_engage("dlq", "list", "--service", "engage.notify", env=env)
    assert code == 0, out
    assert all(d.ref in out and d.reason in out for d in letters)
    assert f"{len(letters)} dead letter(s)" in out

    letter = letters[0]
    before = await topic_ends(poison_stack.kafka_bootstrap, GRANTS_TOPIC)
    code, out = await run_engage("dlq", "replay", letter.ref, env=env)
    assert code == 0, out
    after = await topic_ends(poison_stack.kafka_bootstrap, GRANTS_TOPIC)
    assert sum(after.values()) == sum(before.values()) + 1
    replayed: list[bytes] = []
    await read_topic(poison_stack.kafka_bootstrap, GRANTS_TOPIC, lambda r: replayed.append(r.value))
    assert replayed.count(letter.value) == 2  # the original and the replay

    code, out = await run_engage("dlq", "replay", "engage.notify.dlq:0:999999", env=env)
    assert code == 1 and "no dead letter" in out
