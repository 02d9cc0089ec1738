"""Runs the system on one machine: embedded broker and database (unless configured) + services.

`engage demo`, `engage up` and the integration tests all start services through this module, as
separate processes talking over real TCP connections, exactly as they would be deployed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from engage.runtime import EmbeddedBroker, EmbeddedPostgres, free_port
from engage.tokens import JWKS_FILE, LocalIssuer

# uvicorn --http: its HTTP/1.1 protocol with a deadline on request heads (shared/http_protocol.py)
HEADER_DEADLINE_PROTOCOL = "shared.http_protocol:HeaderDeadlineProtocol"

# name → (ASGI app factory, default port); later services join this table.
SERVICES: dict[str, tuple[str, int]] = {
    "ingest": ("services.ingest.app:create_app", 8001),
    "scoring": ("services.scoring.app:create_app", 8002),
    "rewards": ("services.rewards.app:create_app", 8003),
    "notify": ("services.notify.app:create_app", 8004),
}


def unsafe_fast_requested() -> bool:
    """ENGAGE_UNSAFE_FAST=1: throw-away stacks (the test suite, `--unsafe-fast` demos) run the
    embedded PostgreSQL without fsync. Never for data you keep."""
    return os.environ.get("ENGAGE_UNSAFE_FAST", "").lower() in ("1", "true", "yes")


class PortTaken(RuntimeError):
    """A port a service needs is in use: the message names it and, if known, who holds it."""


def port_holder(port: int) -> str | None:
    """'pid 1234 (python -m uvicorn …)' listening on `port`, if this machine says."""
    try:
        import psutil
    except ImportError:  # the embedded extra brings it; without it, say only the port
        return None
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    return "a process this user cannot see"
                cmd = " ".join(psutil.Process(conn.pid).cmdline())[:120]
                return f"pid {conn.pid} ({cmd})"
    return None


def ensure_port_free(port: int, label: str) -> None:
    """Refuse to start `label` on a port something already listens on (never print URLs of a
    service that could not bind: the user would talk to whatever holds the port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            holder = port_holder(port)
            raise PortTaken(
                f"port {port} for {label} is taken"
                + (f" by {holder}" if holder else "")
                + ": stop that process (another `engage up`?), or start this stack on other "
                "ports with --base-port"
            ) from None


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Turn SIGTERM (service managers, containers, `timeout`) and SIGINT into KeyboardInterrupt
    inside the block, so the caller's `finally` stops every child. SIGINT is set explicitly: a
    shell that starts us in the background ignores it for us."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # One is enough: a second signal must not cut the orderly stop that follows short.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class ServiceProcess:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait for `/readyz` to answer 200, failing early if the process died."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout_s}s: {last}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Stack:
    """Broker, database and services; the embedded ones are started only when not configured."""

    var_dir: Path
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    fixed_ports: bool = True
    base_port: int | None = None  # services on base_port, base_port + 1, …; None = 8001–8004
    # The embedded PostgreSQL keeps PostgreSQL's durable defaults unless ENGAGE_UNSAFE_FAST=1.
    durable: bool = field(default_factory=lambda: not unsafe_fast_requested())
    broker: EmbeddedBroker | None = None
    postgres: EmbeddedPostgres | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls,
        var_dir: Path | None = None,
        fixed_ports: bool = True,
        base_port: int | None = None,
        unsafe_fast: bool = False,
    ) -> Stack:
        """A stack configured like the services: ENGAGE_VAR_DIR, ENGAGE_KAFKA_BOOTSTRAP,
        ENGAGE_DATABASE_URL; ENGAGE_UNSAFE_FAST=1 (or `unsafe_fast`) runs the embedded
        PostgreSQL without fsync — for throw-away stacks only. A stack on a `base_port` of its
        own keeps its state under var/port-<base_port> unless ENGAGE_VAR_DIR says otherwise."""
        default_var = "var" if base_port is None else f"var/port-{base_port}"
        unsafe = unsafe_fast or unsafe_fast_requested()
        return cls(
            var_dir=Path(var_dir or os.environ.get("ENGAGE_VAR_DIR", default_var)).resolve(),
            kafka_bootstrap=os.environ.get("ENGAGE_KAFKA_BOOTSTRAP") or None,
            database_url=os.environ.get("ENGAGE_DATABASE_URL") or None,
            fixed_ports=fixed_ports,
            base_port=base_port,
            durable=not unsafe,
        )

    def port_of(self, name: str) -> int:
        """Where `name` listens: its default port, or its place after `base_port`."""
        default = SERVICES[name][1]
        if self.base_port is None:
            return default
        return self.base_port + list(SERVICES).index(name)

    @property
    def user_token_dir(self) -> Path:
        """Where the local user-token signing key lives (`engage tokens`)."""
        return self.var_dir / "user-tokens"

    def user_token_issuer(self) -> LocalIssuer:
        """The local stand-in for the IM platform's token issuer; unless
        ENGAGE_USER_TOKEN_PUBLIC_KEYS names other keys, ingest and rewards verify its tokens."""
        return LocalIssuer.open(self.user_token_dir)

    def user_token(self, user_id: str, ttl_s: float = 3600.0) -> str:
        """A user token for `user_id`, as a client app of this stack would hold."""
        return self.user_token_issuer().mint(user_id, ttl_s)

    def start_infra(self, fresh_database: bool = True) -> Stack:
        (self.var_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.user_token_issuer()  # the key (and its JWKS) exist before any service starts
        if self.kafka_bootstrap is None:
            # Tracked before it starts: a signal while it comes up must still stop it.
            self.broker = EmbeddedBroker(log_path=self.var_dir / "logs" / "broker.log")
            self.broker.start()
            self.kafka_bootstrap = self.broker.bootstrap
        if self.database_url is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
                self.postgres = EmbeddedPostgres(self.var_dir / "pg", durable=self.durable)
                self.postgres.refuse_if_in_use()
                if fresh_database:
                    self.postgres.destroy()
                self.postgres.start()
            self.database_url = self.postgres.url
        return self

    def env(self) -> dict[str, str]:
        assert self.kafka_bootstrap and self.database_url, "start_infra() first"
        return {
            # User tokens minted by the stack's local issuer verify out of the box.
            "ENGAGE_USER_TOKEN_PUBLIC_KEYS": str(self.user_token_dir / JWKS_FILE),
            **os.environ,
            "ENGAGE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "ENGAGE_DATABASE_URL": self.database_url,
            "PYTHONUNBUFFERED": "1",
        }

    def start_service(
        self,
        name: str,
        port: int | None = None,
        wait: bool = True,
        env: dict[str, str] | None = None,
        instance: str = "",
        factory: str | None = None,
    ) -> ServiceProcess:
        """Start a service (or, with `factory`, any ASGI app factory) as its own process."""
        default_factory, default_port = SERVICES.get(name, ("", 0))
        factory = factory or default_factory
        if port is None and self.fixed_ports and default_port:
            port = self.port_of(name)
            ensure_port_free(port, name)
        port = port or free_port()
        label = f"{name}{instance}"
        log_path = self.var_dir / "logs" / f"{label}.log"
        out = open(log_path, "ab")  # noqa: SIM115  (closed below, once the child has its copy)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "5",
                "--limit-concurrency",  # beyond it, 503 at once: no pile-up of slow clients
                "2000",
                "--http",  # a deadline on request heads (slow clients)
                HEADER_DEADLINE_PROTOCOL,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**self.env(), **(env or {})},
        )
        out.close()  # the child has its own copy
        service = ServiceProcess(label, port, proc, log_path)
        self.services[label] = service
        if wait:
            service.wait_ready()
        return service

    def notify_segments_env(self) -> dict[str, str]:
        """What notify needs to resolve broadcast segments through scoring (SPEC §11: every
        segment kind works out of the box): scoring's URL and a viewer key issued for it.
        Call after ingest (which owns the keys) and scoring have started."""
        import asyncio

        from services.ingest.admin import issue_api_key
        from shared.auth import Role

        assert self.database_url and self.kafka_bootstrap, "start_infra() first"
        scoring = self.services["scoring"]
        issued = asyncio.run(
            issue_api_key(
                self.database_url, "notify-segments", [Role.VIEWER], 1e6, self.kafka_bootstrap
            )
        )
        return {"NOTIFY_SCORING_URL": scoring.url, "NOTIFY_SCORING_KEY": issued.secret}

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        self.services.clear()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
