"""A service's long-running loops (consumers, relays, timers): started in the lifespan, kept
running, and cancelled and awaited at shutdown.

A loop that ends with an exception is logged and started again after a pause: a consumer that
died silently would leave a service that answers `/readyz` but no longer consumes (found by the
chaos suite: PostgreSQL restarting while a consumer was recovering from a failed batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import Counter

log = logging.getLogger(__name__)

RESTARTS = Counter(
    "engage_task_restarts_total", "Background loops restarted after a crash.", ["task"]
)


class BackgroundTasks:
    def __init__(self, restart_delay_s: float = 1.0) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._restart_delay_s = restart_delay_s

    def spawn(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `loop()` until shutdown; if it raises, log it and call it again."""
        RESTARTS.labels(name)
        self._tasks.append(asyncio.create_task(self._supervise(name, loop), name=name))

    async def _supervise(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            try:
                await loop()
                return
            except Exception:
                RESTARTS.labels(name).inc()
                log.exception("background loop crashed; restarting", extra={"task": name})
                await asyncio.sleep(self._restart_delay_s)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
