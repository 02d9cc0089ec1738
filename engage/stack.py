"""Runs the system on one machine: embedded broker and database (unless configured) + services.

`engage demo`, `engage up` and the integration tests all start services through this module, as
separate processes talking over real TCP connections, exactly as they would be deployed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from engage.runtime import EmbeddedBroker, EmbeddedPostgres, free_port

# name → (ASGI app factory, default port); later services join this table.
SERVICES: dict[str, tuple[str, int]] = {
    "ingest": ("services.ingest.app:create_app", 8001),
    "scoring": ("services.scoring.app:create_app", 8002),
    "rewards": ("services.rewards.app:create_app", 8003),
    "notify": ("services.notify.app:create_app", 8004),
}


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
    broker: EmbeddedBroker | None = None
    postgres: EmbeddedPostgres | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @classmethod
    def from_env(cls, var_dir: Path | None = None, fixed_ports: bool = True) -> Stack:
        return cls(
            var_dir=Path(var_dir or os.environ.get("ENGAGE_VAR_DIR", "var")).resolve(),
            kafka_bootstrap=os.environ.get("ENGAGE_KAFKA_BOOTSTRAP") or None,
            database_url=os.environ.get("ENGAGE_DATABASE_URL") or None,
            fixed_ports=fixed_ports,
        )

    def start_infra(self, fresh_database: bool = True) -> Stack:
        (self.var_dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.kafka_bootstrap is None:
            self.broker = EmbeddedBroker(log_path=self.var_dir / "logs" / "broker.log").start()
            self.kafka_bootstrap = self.broker.bootstrap
        if self.database_url is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
                self.postgres = EmbeddedPostgres(self.var_dir / "pg")
                if fresh_database:
                    self.postgres.destroy()
                self.postgres.start()
            self.database_url = self.postgres.url
        return self

    def env(self) -> dict[str, str]:
        assert self.kafka_bootstrap and self.database_url, "start_infra() first"
        return {
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
        port = port or (default_port if self.fixed_ports and default_port else free_port())
        label = f"{name}{instance}"
        log_path = self.var_dir / "logs" / f"{label}.log"
        out = open(log_path, "ab")  # noqa: SIM115  (owned by the child process)
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
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**self.env(), **(env or {})},
        )
        service = ServiceProcess(label, port, proc, log_path)
        self.services[label] = service
        if wait:
            service.wait_ready()
        return service

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        self.services.clear()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
