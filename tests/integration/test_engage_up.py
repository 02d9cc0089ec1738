"""`engage up` as a service manager drives it (issue 19): started in the background, stopped
with SIGTERM, it leaves no process of its own behind; a second stack on taken ports or on the
same state directory refuses to start and says why; `--base-port` runs two side by side; and
the embedded PostgreSQL keeps PostgreSQL's durable defaults."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from engage.progress import wait_keys_known
from services.ingest.admin import issue_api_key
from shared.auth import Role

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
UP_TIMEOUT_S = 120


@dataclass
class Up:
    proc: subprocess.Popen[str]
    lines: list[str]
    var_dir: Path

    def descendants(self) -> set[int]:
        try:
            return {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def postmaster(self) -> int | None:
        pid_file = self.var_dir / "pg" / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def database_url(self) -> str:
        line = next(x for x in self.lines if x.startswith("database "))
        return line.split()[1].replace("+asyncpg", "")


def start_up(var_dir: Path, *args: str, background: bool = True) -> subprocess.Popen[str]:
    env = {**os.environ, "ENGAGE_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("ENGAGE_UNSAFE_FAST", None)  # the default, as a user meets it
    return subprocess.Popen(
        [sys.executable, "-m", "engage.cli", "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # As a non-interactive shell starts a background job: SIGINT ignored.
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None,
    )


def wait_running(proc: subprocess.Popen[str], timeout_s: float = UP_TIMEOUT_S) -> list[str]:
    """Lines printed until `engage up` says it runs (it prints URLs only once all are ready)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"engage up ended before running:\n{''.join(lines)}")
        lines.append(line.rstrip("\n"))
        if line.startswith("Running;"):
            return lines
    raise AssertionError(f"engage up not running after {timeout_s}s:\n" + "\n".join(lines))


def launch(var_dir: Path) -> Up:
    proc = start_up(var_dir, "--base-port", str(free_port_block()))
    return Up(proc, wait_running(proc), var_dir)


def stop(up: Up) -> None:
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGTERM)
        up.proc.wait(60)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One stack the refusal tests run beside (started as a background job would be)."""
    up = launch(tmp_path_factory.mktemp("up") / "a")
    try:
        yield up
    finally:
        stop(up)


def free_port_block(n: int = 4) -> int:
    """A base port with n consecutive free ports above it, below the kernel's ephemeral range
    (32768–60999 by default): a port the kernel hands out for an outgoing connection between
    this check and the stack's start would otherwise make the start fail, rightly."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - n)
        if all(_free(base + i) for i in range(n)):
            return base
    raise AssertionError("no block of free ports")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


async def test_sigterm_stops_every_service_the_broker_and_the_database(tmp_path: Path) -> None:
    running = launch(tmp_path / "sigterm")
    children, postmaster = running.descendants(), running.postmaster()
    assert len(children) >= 5, children  # four services and the broker (PostgreSQL daemonizes)
    assert postmaster is not None and alive(postmaster)
    urls = [line for line in running.lines if "/docs" in line]
    assert len(urls) == 4

    started = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(60) == 0
    stopped_in = time.monotonic() - started
    left = []
    for pid in (*children, postmaster):
        with contextlib.suppress(psutil.NoSuchProcess):
            left.append(psutil.Process(pid))
    _, still_alive = psutil.wait_procs(left, timeout=30)  # a condition with a deadline
    assert [p.pid for p in still_alive if alive(p.pid)] == []
    print(f"\nSIGTERM → engage up exited in {stopped_in:.1f} s, nothing left behind")


async def test_a_second_stack_on_taken_ports_refuses_and_names_the_holder(
    running: Up, tmp_path: Path
) -> None:
    base = int(running.lines[0].split(":")[2].split("/")[0])  # "ingest   http://127.0.0.1:N/docs"
    second = start_up(tmp_path / "b", "--base-port", str(base))
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 1, out
    assert f"port {base} for ingest is taken by pid" in out
    assert "--base-port" in out and "/docs" not in out  # no URL of a service that did not start
    assert not (tmp_path / "b" / "pg").exists()  # refused before starting anything


async def test_a_second_stack_on_the_same_state_refuses_instead_of_sharing_its_database(
    running: Up,
) -> None:
    second = start_up(running.var_dir, "--base-port", str(free_port_block()))
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 1, out
    assert f"in use by PostgreSQL pid {running.postmaster()}" in out
    assert running.postmaster() is not None and alive(running.postmaster() or 0)


async def test_two_stacks_run_side_by_side_on_their_own_base_ports(
    running: Up, tmp_path: Path
) -> None:
    other = launch(tmp_path / "c")
    try:
        mine = [x for x in running.lines if "/docs" in x]
        assert len(mine) == 4 and not set(mine) & {x for x in other.lines if "/docs" in x}
        assert other.postmaster() != running.postmaster()
    finally:
        stop(other)
    assert other.proc.returncode == 0


async def test_the_embedded_database_keeps_postgresql_durable_defaults(running: Up) -> None:
    conn = await asyncpg.connect(running.database_url())
    try:
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("fsync", "synchronous_commit", "full_page_writes")
        }
    finally:
        await conn.close()
    assert settings == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


async def test_notify_resolves_every_segment_kind_out_of_the_box(running: Up) -> None:
    """The embedded default wires notify to scoring with a viewer key of its own: a broadcast to
    the top groups of a month is accepted (it used to be refused: segment_unavailable)."""
    url = running.database_url().replace("postgresql://", "postgresql+asyncpg://")
    bootstrap = next(x for x in running.lines if x.startswith("broker ")).split()[1]
    owner = (await issue_api_key(url, "owner", [Role.CAMPAIGN_OWNER], 1e6, bootstrap)).secret
    notify = (
        next(x for x in running.lines if x.startswith("notify")).split()[1].removesuffix("/docs")
    )
    await wait_keys_known(notify, "/v1/policies", [owner])
    segment = {"kind": "top_groups", "month": "2026-11", "province": "BJ", "top": 3}
    body = {"name": "top", "template": "notice", "category": "service", "segment": segment}
    template = {"category": "service", "text": "群活动通知", "placeholders": []}
    async with httpx.AsyncClient(
        base_url=notify, headers={"Authorization": f"Bearer {owner}"}, timeout=30
    ) as c:
        assert (await c.put("/v1/templates/notice/im/zh-CN", json=template)).status_code == 200
        r = await c.post("/v1/broadcasts", json=body)
    assert r.status_code == 201, r.text
