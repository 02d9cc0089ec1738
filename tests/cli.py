"""Run the `engage` command as an operator would: a separate process with its own environment."""

from __future__ import annotations

import asyncio
import os
import sys


async def run_engage(*args: str, env: dict[str, str], timeout_s: float = 120) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `engage ARGS...` with `env` added to this environment."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engage.cli",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    return proc.returncode or 0, out.decode()
