"""Expensive requests (simulations, reports, segment counts) under an admission gate (SPEC §15,
issue 18): at most N run at once per process and M per key, the rest get 429 with Retry-After
at once — a queue would only hold their connections longer — and each runs as a task that is
cancelled when its client goes away (asyncpg then cancels the statement in the database).
Work that is Python for long (a backtest) runs on a loop of its own in a thread of its own
(`in_own_thread`), so the service's loop keeps answering."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_args

from fastapi import Depends, Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from starlette.datastructures import State

from shared.auth import Principal
from shared.errors import EngageError, RateLimited
from shared.http import PROBLEM_JSON, Problem
from shared.metrics import HEAVY_REFUSED, HEAVY_RUNNING

T = TypeVar("T")


class ClientGone(EngageError):
    """The client went away before the answer (nginx's 499): logged and counted, never read."""

    status, code, title = 499, "client_closed_request", "Client closed request"


# OpenAPI `responses` of an expensive route (its 422 says what else it refuses).
HEAVY_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "Over the caller's request rate, or this replica already runs "
        "ENGAGE_HEAVY_MAX_PER_SERVICE expensive requests or this key ENGAGE_HEAVY_MAX_PER_KEY; "
        "retry after `Retry-After` seconds",
    },
    503: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": "Ran past its time limit and was cancelled (`statement_timeout`, "
        "`simulation_timeout`), or the database is away; retry after `Retry-After` seconds",
    },
}


class HeavySettings(BaseSettings):
    """`ENGAGE_HEAVY_*`: how many expensive requests a process runs at once."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_HEAVY_", extra="ignore")

    max_per_service: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Expensive requests (simulations, campaign reports) one replica runs at "
        "once, over every key; more: 429 with Retry-After. Each keeps about a core busy (its "
        "thread and its database backend): leave one for the requests that must stay fast — "
        "on 2 cores, 2 at once took /healthz p99 to 53 ms, 1 kept it at 30 (bench/RESULTS.md).",
    )
    max_per_key: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Expensive requests one key runs at once on one replica; more: 429.",
    )
    retry_after_s: int = Field(
        default=5, ge=1, le=3600, description="The Retry-After of a refused expensive request."
    )
    disconnect_poll_s: float = Field(
        default=0.25, gt=0, le=10, description="How often a running one checks for its client."
    )


@dataclass(slots=True)
class HeavyGate:
    """Counts of running expensive requests, per process and per key. One event loop owns it:
    admission is a check and an increment with no await between them, so no lock is needed."""

    service: str
    max_per_service: int
    max_per_key: int
    retry_after_s: int = 5
    disconnect_poll_s: float = 0.25
    running: int = 0
    by_key: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, service: str, settings: HeavySettings) -> HeavyGate:
        return cls(
            service,
            settings.max_per_service,
            settings.max_per_key,
            settings.retry_after_s,
            settings.disconnect_poll_s,
        )

    @contextmanager
    def admit(self, key: str, what: str) -> Iterator[None]:
        """Hold one place for `key` while the block runs; 429 naming the limit when none is free."""
        if self.by_key.get(key, 0) >= self.max_per_key:
            self._refuse(
                what,
                "key",
                f"this key already runs {self.max_per_key} expensive request(s) on this "
                "replica (ENGAGE_HEAVY_MAX_PER_KEY)",
            )
        if self.running >= self.max_per_service:
            self._refuse(
                what,
                "service",
                f"this replica already runs {self.max_per_service} expensive requests "
                "(ENGAGE_HEAVY_MAX_PER_SERVICE)",
            )
        self.running += 1
        self.by_key[key] = self.by_key.get(key, 0) + 1
        HEAVY_RUNNING.labels(self.service, what).inc()
        try:
            yield
        finally:
            self.running -= 1
            left = self.by_key[key] - 1
            if left:
                self.by_key[key] = left
            else:
                del self.by_key[key]
            HEAVY_RUNNING.labels(self.service, what).dec()

    def _refuse(self, what: str, limit: str, why: str) -> None:
        HEAVY_REFUSED.labels(self.service, what, limit).inc()
        raise RateLimited(
            f"{what} refused: {why}; retry after {self.retry_after_s} s",
            retry_after_s=self.retry_after_s,
        )


def heavy_gate(state: State, service: str) -> HeavyGate:
    """The app's gate (`app.state.heavy_gate`), else one from ENGAGE_HEAVY_* made on first use."""
    if not hasattr(state, "heavy_gate"):
        state.heavy_gate = HeavyGate.of(service, HeavySettings())
    gate: HeavyGate = state.heavy_gate
    return gate


def heavy(service: str, what: str, principal: Any) -> Any:
    """A dependency for an expensive route: the caller of `principal` (an alias such as
    `RequireCampaignReader`), admitted past the gate; its place is held until the route
    returns (before the response is sent)."""
    caller = get_args(principal)[1]

    async def admitted(
        request: Request, principal: Annotated[Principal, caller]
    ) -> AsyncIterator[Principal]:
        with heavy_gate(request.app.state, service).admit(principal.key_id, what):
            yield principal

    # Postponed annotations are strings that cannot name this closure's `caller`: resolve here.
    admitted.__annotations__.update(request=Request, principal=Annotated[Principal, caller])
    admitted.__name__ = f"heavy_{what}"
    return Depends(admitted, scope="function")


async def with_client(request: Request, service: str, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` as a task and cancel it as soon as the client disconnects: a request nobody
    waits for stops, and the database statement it was running is cancelled with it."""
    gate = heavy_gate(request.app.state, service)
    return await cancel_when(request.is_disconnected, work, gate.disconnect_poll_s)


async def cancel_when(
    gone: Callable[[], Awaitable[bool]],
    work: Coroutine[Any, Any, T],
    poll_s: float,
) -> T:
    """`work`'s result, unless `gone()` (checked every `poll_s`) turns true first: then the work
    is cancelled and this raises `ClientGone`."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await gone():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise ClientGone("the client disconnected; the work was cancelled")
    finally:
        if not task.done():  # this request itself was cancelled: so is its work
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def in_own_thread(make: Callable[[], Coroutine[Any, Any, T]], nice: int = 0) -> T:
    """`make()` run to completion on an event loop of its own in a thread of its own: Python
    work that would hold this loop for long (a backtest's running sums) shares the CPU with it
    by the interpreter's switch interval instead of by its own awaits, at `nice` (Linux: the
    thread's own scheduling priority, so the loop serving requests comes first). Cancelling
    the caller cancels the work there and waits until it has stopped (its statements
    cancelled, its connections closed). The work must not touch this loop's objects."""
    lock = threading.Lock()
    handle: dict[str, Any] = {}
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[T] = loop.create_future()

    async def runner() -> T:
        with lock:
            if handle.get("cancelled"):
                raise asyncio.CancelledError("cancelled before it started")
            handle["loop"], handle["task"] = asyncio.get_running_loop(), asyncio.current_task()
        return await make()

    def report(outcome: Callable[[], T]) -> None:
        def settle() -> None:
            if finished.done():
                return
            try:
                finished.set_result(outcome())
            except asyncio.CancelledError:
                finished.cancel()
            except BaseException as exc:  # the work's failure is the caller's to see
                finished.set_exception(exc)

        loop.call_soon_threadsafe(settle)

    def main() -> None:
        if nice:
            with contextlib.suppress(AttributeError, OSError):  # not Linux: same priority
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        try:
            result = asyncio.run(runner())
        except BaseException as exc:
            failure = exc
            report(lambda: _raise(failure))
        else:
            report(lambda: result)

    if sys.getswitchinterval() > WORK_SWITCH_INTERVAL_S:
        sys.setswitchinterval(WORK_SWITCH_INTERVAL_S)
    threading.Thread(target=main, name="heavy-work", daemon=True).start()
    try:
        return await asyncio.shield(finished)
    except asyncio.CancelledError:
        with lock:
            handle["cancelled"] = True
            there, task = handle.get("loop"), handle.get("task")
        if there is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # its loop just closed: the work is done
                there.call_soon_threadsafe(task.cancel)
        await asyncio.gather(finished, return_exceptions=True)
        raise


# With work threads running, the loop waits for the GIL up to the switch interval each time it
# wakes (5 ms by default, several times per request): a shorter one keeps /healthz fast.
WORK_SWITCH_INTERVAL_S = 0.001


def _raise(exc: BaseException) -> Any:
    raise exc


def statement_bounded(state: State) -> async_sessionmaker[AsyncSession]:
    """The app's sessions, each of whose transactions begins with the API's statement timeout
    (`app.state.statement_timeout_ms`): for use cases that open their own units of work, which
    the request's session dependency (shared/api_deps.py) does not reach."""
    if not hasattr(state, "statement_bounded_sessions"):
        sessions: async_sessionmaker[AsyncSession] = state.sessions
        ms = int(getattr(state, "statement_timeout_ms", 0) or 0)

        class Bounded(Session):
            pass

        if ms:

            @event.listens_for(Bounded, "after_begin")
            def bound(_: Session, __: Any, connection: Connection) -> None:
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")

        state.statement_bounded_sessions = async_sessionmaker(
            **{**sessions.kw, "sync_session_class": Bounded}
        )
    bounded: async_sessionmaker[AsyncSession] = state.statement_bounded_sessions
    return bounded
