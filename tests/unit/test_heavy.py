"""The admission gate of expensive requests and their cancellation with the client (SPEC §15,
issue 18), and a simulation's size estimate."""

from __future__ import annotations

import asyncio
import threading
from datetime import date

import pytest

from services.rewards.domain.simulation_cost import SimulationCost
from services.rewards.usecases.simulate import MemoryGuard, resident_mb
from shared.errors import RateLimited, ValidationFailed
from shared.heavy import ClientGone, HeavyGate, cancel_when, in_own_thread
from shared.metrics import HEAVY_REFUSED, HEAVY_RUNNING


def make_gate(per_service: int = 2, per_key: int = 1) -> HeavyGate:
    return HeavyGate("test", per_service, per_key, retry_after_s=7)


def test_a_key_over_its_limit_is_refused_with_retry_after_and_the_setting_named() -> None:
    gate = make_gate(per_service=2, per_key=1)
    refused_before = HEAVY_REFUSED.labels("test", "simulation", "key")._value.get()
    with (
        gate.admit("key-a", "simulation"),
        pytest.raises(RateLimited) as refused,
        gate.admit("key-a", "simulation"),
    ):
        pass
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "7"
    assert "ENGAGE_HEAVY_MAX_PER_KEY" in refused.value.detail
    assert HEAVY_REFUSED.labels("test", "simulation", "key")._value.get() == refused_before + 1


def test_the_service_limit_holds_over_every_key() -> None:
    gate = make_gate(per_service=2, per_key=1)
    with gate.admit("a", "report"), gate.admit("b", "report"):
        assert HEAVY_RUNNING.labels("test", "report")._value.get() == 2
        with pytest.raises(RateLimited) as refused, gate.admit("c", "report"):
            pass
        assert "ENGAGE_HEAVY_MAX_PER_SERVICE" in refused.value.detail
    assert gate.running == 0 and gate.by_key == {}
    assert HEAVY_RUNNING.labels("test", "report")._value.get() == 0


def test_a_place_is_given_back_when_the_work_fails() -> None:
    gate = make_gate(per_service=1, per_key=1)
    with pytest.raises(ValueError), gate.admit("a", "simulation"):
        raise ValueError("boom")
    with gate.admit("a", "simulation"):  # free again
        assert gate.running == 1


async def test_work_is_cancelled_when_the_client_goes_away() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    gone = False

    async def work() -> int:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    async def is_gone() -> bool:
        return gone

    running = asyncio.ensure_future(cancel_when(is_gone, work(), poll_s=0.01))
    await asyncio.wait_for(started.wait(), 5)
    gone = True
    with pytest.raises(ClientGone):
        await asyncio.wait_for(running, 5)
    assert cancelled.is_set()


async def test_work_that_finishes_is_answered() -> None:
    async def work() -> str:
        await asyncio.sleep(0.02)
        return "done"

    async def never() -> bool:
        return False

    assert await cancel_when(never, work(), poll_s=0.005) == "done"


def test_a_simulation_cost_over_the_budget_names_the_estimate_the_limit_and_a_range_that_fits() -> (
    None
):
    cost = SimulationCost.of(date(2026, 8, 1), date(2026, 10, 31), rules=20, users=1_000_000)
    assert cost.days == 92 and cost.user_days == 92 * 20 * 1_000_000
    why = cost.over(100_000_000)
    assert why is not None
    assert "1,840,000,000" in why and "100,000,000" in why
    assert "REWARDS_SIMULATION_MAX_USER_DAYS" in why and "at most 5 day(s)" in why
    assert (
        SimulationCost.of(date(2026, 10, 1), date(2026, 10, 5), 20, 1_000_000).over(100_000_000)
        is None
    )


def test_a_cost_no_range_can_fit_asks_for_fewer_rules() -> None:
    why = SimulationCost.of(date(2026, 10, 1), date(2026, 10, 1), 40, 10_000_000).over(10**8)
    assert why is not None and "fewer rules" in why


def test_the_count_of_users_may_stop_just_past_the_budget() -> None:
    bare = SimulationCost.of(date(2026, 10, 1), date(2026, 10, 10), 2, 0)
    cap = bare.users_to_refuse(1000)
    assert SimulationCost.of(date(2026, 10, 1), date(2026, 10, 10), 2, cap).over(1000)
    assert not SimulationCost.of(date(2026, 10, 1), date(2026, 10, 10), 2, cap - 1).over(1000)


async def test_work_in_its_own_thread_answers_on_a_loop_of_its_own() -> None:
    here = asyncio.get_running_loop()

    async def work() -> bool:
        await asyncio.sleep(0)
        return asyncio.get_running_loop() is not here

    assert await in_own_thread(work, nice=5) is True


async def test_a_failure_in_its_own_thread_reaches_the_caller() -> None:
    async def work() -> None:
        raise RateLimited("full", retry_after_s=3)

    with pytest.raises(RateLimited):
        await in_own_thread(work)


async def test_cancelling_the_caller_cancels_the_work_in_its_thread_and_waits_for_it() -> None:
    started, stopped = threading.Event(), threading.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    running = asyncio.ensure_future(in_own_thread(work))
    await asyncio.to_thread(started.wait, 5)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert stopped.is_set()  # the caller waited until the work had stopped


def test_a_simulation_whose_process_grows_past_the_memory_limit_is_stopped() -> None:
    resident = resident_mb()
    assert resident is not None  # Linux
    with pytest.raises(ValidationFailed) as stopped:
        MemoryGuard(max_rss_mb=int(resident) // 2).check()
    assert stopped.value.code == "simulation_too_large"
    assert "REWARDS_SIMULATION_MAX_RSS_MB" in stopped.value.detail
    MemoryGuard(max_rss_mb=int(resident) * 4).check()  # under it: nothing
