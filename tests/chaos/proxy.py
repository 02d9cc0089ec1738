"""An asyncio TCP fault proxy: latency, blackhole, refusal and connection resets between the
services and the broker or the database (this kernel has no `tc netem`; FIELD-NOTES).

It runs its own event loop in a thread, so it keeps forwarding while the test's loop is busy or
blocked (e.g. waiting for a service to become ready); the fault switches are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

from engage.runtime import free_port

CHUNK = 64 * 1024


@dataclass
class ProxyStats:
    connections: int = 0
    resets: int = 0
    refused: int = 0
    bytes_forwarded: int = 0


@dataclass
class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`, faults as switched."""

    target_port: int
    port: int = field(default_factory=free_port)
    name: str = "proxy"
    latency_s: float = 0.0  # added to every chunk, both directions
    stats: ProxyStats = field(default_factory=ProxyStats)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=self.name)
        self._flowing: asyncio.Event | None = None  # cleared = blackhole
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()

    # -- faults (callable from any thread) -------------------------------------------------
    def set_latency(self, seconds: float) -> None:
        self.latency_s = seconds

    def blackhole(self, on: bool) -> None:
        """On: connections stay open but no byte passes (a partition); off: traffic resumes."""
        self._call(lambda: self._flowing.clear() if on else self._flowing.set())  # type: ignore[union-attr]

    def refuse(self, on: bool) -> None:
        """On: every open connection is reset and new ones are reset at once (a dead host)."""
        self._refusing = on
        if on:
            self.reset_all()

    def reset_all(self) -> None:
        """Reset (RST) every open connection, as a restarting peer would."""
        self._call(self._abort_all)

    def _call(self, fn: object) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()  # type: ignore[operator]
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            self.stats.resets += 1
            _abort(writer)
        self._writers.clear()

    # -- forwarding ------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.stats.refused += 1
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self.stats.refused += 1
            _abort(writer)
            return
        self.stats.connections += 1
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        try:  # either side closing ends the pair (neither Kafka nor PostgreSQL half-closes)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(CHUNK):
                await self._flowing.wait()
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                writer.write(data)
                await writer.drain()
                self.stats.bytes_forwarded += len(data)
        except (ConnectionError, OSError):
            pass


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
