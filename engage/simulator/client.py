"""Posts simulated events through ingest like real clients: batches, gzip, retries, same ids.

Client event types go as their user's client app would send them (with that user's token) or
through a server relay key; the IM platform's events go with a platform key (SPEC §14)."""

from __future__ import annotations

import asyncio
import gzip
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class PostReport:
    sent: int = 0  # deliveries attempted (duplicates included)
    accepted: int = 0  # deliveries answered as accepted (duplicates included)
    rejected: int = 0
    retries: int = 0
    seconds: float = 0.0
    accepted_ids: set[str] = field(default_factory=set)
    by_type: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)

    @property
    def unique_accepted(self) -> int:
        return len(self.accepted_ids)

    def merge(self, other: PostReport) -> None:
        self.sent += other.sent
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.retries += other.retries
        self.seconds += other.seconds
        self.accepted_ids |= other.accepted_ids
        self.by_type.update(other.by_type)
        self.rejections.update(other.rejections)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or when forced)."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._start = self._last = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.25 or self.done >= self.total):
            self._last = now
            share = self.done / max(1, self.total)
            bar = "#" * int(share * 30)
            rate = self.done / max(1e-9, now - self._start)
            sys.stderr.write(
                f"\r  {self.label:<14} [{bar:<30}] {self.done:>9,}/{self.total:,} {rate:>8,.0f}/s"
            )
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


async def post_events(
    base_url: str,
    api_key: str,
    events: Sequence[dict[str, Any]],
    *,
    path: str = "/v1/events",
    batch_size: int = 100,
    concurrency: int = 4,
    use_gzip: bool = False,
    label: str = "events",
    progress: bool | None = None,
    max_attempts: int = 30,
    report: PostReport | None = None,
) -> PostReport:
    """Post `events` in batches with one credential; 503/429/connection errors are retried with
    the same event_id.

    Pass `report` to watch it fill while the posting runs."""
    report = report if report is not None else PostReport()
    bar = Progress(label, len(events), progress)
    jobs = [(api_key, events[i : i + batch_size]) for i in range(0, len(events), batch_size)]
    start = time.perf_counter()
    await _post_jobs(base_url, jobs, path, concurrency, use_gzip, max_attempts, report, bar)
    report.seconds = time.perf_counter() - start
    return report


Credential = Callable[[dict[str, Any]], str]


async def post_as_clients(
    base_url: str,
    credential: Credential,
    events: Sequence[dict[str, Any]],
    *,
    window: int = 10_000,
    batch_size: int = 100,
    concurrency: int = 8,
    label: str = "events",
    progress: bool | None = None,
    max_attempts: int = 30,
    report: PostReport | None = None,
) -> PostReport:
    """Post `events` each with `credential(event)` (its user's token, a relay or a platform
    key): in windows of `window` events, in order, each window's events batched per
    credential — as each user's app flushes its own queue."""
    report = report if report is not None else PostReport()
    bar = Progress(label, len(events), progress)
    start = time.perf_counter()
    for w in range(0, len(events), window):
        by_credential: dict[str, list[dict[str, Any]]] = {}
        for event in events[w : w + window]:
            by_credential.setdefault(credential(event), []).append(event)
        jobs = [
            (cred, batch[i : i + batch_size])
            for cred, batch in by_credential.items()
            for i in range(0, len(batch), batch_size)
        ]
        await _post_jobs(
            base_url, jobs, "/v1/events", concurrency, False, max_attempts, report, bar
        )
    report.seconds = time.perf_counter() - start
    return report


async def _post_jobs(
    base_url: str,
    jobs: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    path: str,
    concurrency: int,
    use_gzip: bool,
    max_attempts: int,
    report: PostReport,
    bar: Progress,
) -> None:
    queue: asyncio.Queue[tuple[str, Sequence[dict[str, Any]]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            credential, batch = queue.get_nowait()
            headers = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
            if use_gzip:
                headers["Content-Encoding"] = "gzip"
            body = orjson.dumps({"events": list(batch)})
            if use_gzip:
                body = gzip.compress(body, compresslevel=1)
            for attempt in range(max_attempts):
                try:
                    r = await client.post(path, content=body, headers=headers)
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code in (202, 422):
                    break
                if r is not None and r.status_code not in (429, 503):
                    raise RuntimeError(f"ingest answered {r.status_code}: {r.text[:500]}")
                report.retries += 1
                retry_after = float(r.headers.get("Retry-After", "1")) if r is not None else 0.5
                await asyncio.sleep(min(retry_after, 0.2 * 2**attempt))
            else:
                raise RuntimeError(f"gave up on a batch after {max_attempts} attempts")
            result = r.json()
            rejected = {item["index"]: item for item in result["rejected"]}
            for i, event in enumerate(batch):
                if i in rejected:
                    report.rejections[rejected[i]["code"]] += 1
                elif event["event_id"] not in report.accepted_ids:
                    report.accepted_ids.add(event["event_id"])
                    report.by_type[event["type"]] += 1
            report.sent += len(batch)
            report.accepted += result["accepted"]
            report.rejected += len(rejected)
            bar.advance(len(batch))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
