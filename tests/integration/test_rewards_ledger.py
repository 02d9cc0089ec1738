"""The grants ledger under concurrency, on a real PostgreSQL: budgets are never overspent and
one grant per (campaign, rule, subject, period) holds whatever the interleaving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engage.stack import Stack
from services.rewards.app import MIGRATIONS
from services.rewards.domain.decisions import GrantDecision
from services.rewards.store.ledger import record_grants, revoke_grant
from tests.integration.conftest import migrated_sessions

pytestmark = pytest.mark.asyncio
SCHEMA = "rewards_ledger_test"
CONTENDERS = 20


@pytest.fixture(scope="module")
async def sessions(stack: Stack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(stack, MIGRATIONS, SCHEMA, pool_size=CONTENDERS) as sessions:
        yield sessions


async def new_campaign(sessions: async_sessionmaker[AsyncSession], name: str, budget: int) -> str:
    async with sessions() as s, s.begin():
        await s.execute(
            text("INSERT INTO campaigns (campaign_id, created_by) VALUES (:c, 'test')"), {"c": name}
        )
        await s.execute(
            text("INSERT INTO budgets (campaign_id, kind, total) VALUES (:c, 'credit_fen', :t)"),
            {"c": name, "t": budget},
        )
    return name


def decision(user: str, amount: int = 100) -> GrantDecision:
    return GrantDecision(
        "rule", "user", user, "2026-10", (("credit_fen", amount),), date(2026, 11, 10)
    )


async def contend(
    sessions: async_sessionmaker[AsyncSession], campaign: str, decisions: list[GrantDecision]
) -> None:
    """Each decision in its own transaction, all at once, released by one barrier."""
    start = asyncio.Event()

    async def one(d: GrantDecision) -> None:
        async with sessions() as s, s.begin():
            await s.execute(text("SELECT 1"))  # hold a connection before the start signal
            await start.wait()
            await record_grants(s, campaign, 1, [d])

    tasks = [asyncio.create_task(one(d)) for d in decisions]
    await asyncio.sleep(0)
    start.set()
    await asyncio.gather(*tasks)


async def ledger(sessions: async_sessionmaker[AsyncSession], campaign: str) -> dict[str, int]:
    async with sessions() as s:
        rows = await s.execute(
            text("SELECT status, count(*) AS n FROM grants WHERE campaign_id = :c GROUP BY status"),
            {"c": campaign},
        )
        counts = {r.status: int(r.n) for r in rows}
        spent = (
            await s.execute(
                text("SELECT spent FROM budgets WHERE campaign_id = :c"), {"c": campaign}
            )
        ).scalar_one()
    return counts | {"spent": int(spent)}


async def test_budget_of_n_under_20_concurrent_contenders_grants_exactly_n(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    n = 7
    campaign = await new_campaign(sessions, "budget-race", budget=n * 100)
    await contend(sessions, campaign, [decision(f"u{i}") for i in range(CONTENDERS)])
    assert await ledger(sessions, campaign) == {
        "granted": n, "budget_exhausted": CONTENDERS - n, "spent": n * 100,
    }  # fmt: skip


async def test_same_grant_from_20_contenders_is_recorded_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = await new_campaign(sessions, "same-key-race", budget=10_000)
    await contend(sessions, campaign, [decision("u1")] * CONTENDERS)
    assert await ledger(sessions, campaign) == {"granted": 1, "spent": 100}


async def test_the_database_refuses_a_second_grant_for_the_same_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = await new_campaign(sessions, "unique-key", budget=10_000)
    async with sessions() as s, s.begin():
        await record_grants(s, campaign, 1, [decision("u1")])
    with pytest.raises(IntegrityError):
        async with sessions() as s, s.begin():
            await s.execute(
                text(
                    "INSERT INTO grants (campaign_id, version, rule_id, role, user_id, period, "
                    "status, items, fulfil_by, explanation) VALUES (:c, 2, 'rule', 'user', 'u1', "
                    "'2026-10', 'granted', '[]', '2026-11-10', '{}')"
                ),
                {"c": campaign},
            )


async def test_revocation_is_a_state_change_that_releases_budget(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = await new_campaign(sessions, "revoke", budget=100)
    async with sessions() as s, s.begin():
        (granted,) = (await record_grants(s, campaign, 1, [decision("u1")])).rows
        revoked = await revoke_grant(s, granted["grant_id"], "fraud", datetime.now(UTC))
    assert revoked is not None
    assert (revoked["status"], revoked["revoke_reason"]) == ("revoked", "fraud")
    assert await ledger(sessions, campaign) == {"revoked": 1, "spent": 0}
    async with sessions() as s, s.begin():  # the freed budget pays the next grant
        await record_grants(s, campaign, 1, [decision("u2")])
    assert await ledger(sessions, campaign) == {"revoked": 1, "granted": 1, "spent": 100}


async def test_the_same_decision_twice_in_one_call_is_one_grant_the_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = await new_campaign(sessions, "same-call", budget=10_000)
    async with sessions() as s, s.begin():
        recorded = await record_grants(s, campaign, 1, [decision("u1"), decision("u1", 999)])
    assert [(r["user_id"], r["items"]) for r in recorded.rows] == [
        ("u1", [{"kind": "credit_fen", "amount": 100}])
    ]
    assert await ledger(sessions, campaign) == {"granted": 1, "spent": 100}


async def test_only_a_granted_grant_can_be_revoked(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    campaign = await new_campaign(sessions, "revoke-twice", budget=100)
    async with sessions() as s, s.begin():
        (granted,) = (await record_grants(s, campaign, 1, [decision("u1")])).rows
        assert await revoke_grant(s, granted["grant_id"], "fraud", datetime.now(UTC)) is not None
        assert await revoke_grant(s, granted["grant_id"], "again", datetime.now(UTC)) is None
    assert await ledger(sessions, campaign) == {"revoked": 1, "spent": 0}
