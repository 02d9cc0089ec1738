"""A loopback SMSC for tests, benches and demos, on the `smpp34` SMPP 3.4 server.

Accepts submit_sm with a message id, sends a delivery receipt after `receipt_delay_s`
(UNDELIV for destinations in `undeliverable`), can answer the first `throttle_first` submits
with ESME_RTHROTTLED, drop every session (connection loss), and push a reply from a user.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import smpp34

from engage.runtime import free_port


@dataclass
class Submitted:
    destination: str
    text: str
    message_id: str
    at: float


@dataclass
class SmscSimulator:
    receipt_delay_s: float = 0.05
    undeliverable: set[str] = field(default_factory=set)
    throttle_first: int = 0
    port: int = field(default_factory=free_port)
    submitted: list[Submitted] = field(default_factory=list)
    throttled: int = 0
    sessions_seen: int = 0
    _server: smpp34.Server | None = None
    _esmes: dict[str, smpp34.Esme] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> SmscSimulator:
        self._server = smpp34.Server("127.0.0.1", self.port, system_id="smsc-sim")
        await self._server.start()
        self._spawn(self._serve())
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.stop()

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self) -> None:
        assert self._server is not None
        while True:
            event = await self._server.next()
            if isinstance(event, smpp34.Esme):
                self._esmes[event.session_id] = event
                self.sessions_seen += 1
            elif isinstance(event, smpp34.Unbound):
                self._esmes.pop(event.session_id, None)
            elif isinstance(event, smpp34.SubmitSmEvent):
                self._submit(event)

    def _submit(self, event: smpp34.SubmitSmEvent) -> None:
        if self.throttled < self.throttle_first:
            self.throttled += 1
            event.reject(smpp34.ESME_RTHROTTLED)  # type: ignore[attr-defined]
            return
        payload = event.short_message or next(
            (t.value for t in event.tlvs if t.tag == smpp34.TLV_MESSAGE_PAYLOAD),  # type: ignore[attr-defined]
            b"",
        )
        text = payload.decode("utf-16-be" if event.data_coding == 8 else "latin-1")
        message_id = f"sim{len(self.submitted) + 1:08d}"
        self.submitted.append(Submitted(event.destination_addr, text, message_id, time.monotonic()))
        event.accept(message_id)
        if event.registered_delivery:
            self._spawn(self._receipt(event.session_id, event.destination_addr, message_id))

    async def _receipt(self, session_id: str, destination: str, message_id: str) -> None:
        await asyncio.sleep(self.receipt_delay_s)
        esme = self._esmes.get(session_id)
        if esme is None:
            return
        stat = "UNDELIV" if destination in self.undeliverable else "DELIVRD"
        text = (
            f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:2611221200 done date:2611221200 stat:{stat} err:000 text:"
        )
        with contextlib.suppress(Exception):  # the session may be gone: the receipt is lost
            await esme.deliver_sm("engage", text.encode(), source_addr=destination, esm_class=4)

    async def reply(self, user: str, text: str) -> None:
        """A mobile-originated message from `user` (e.g. "TD") to every bound session."""
        for esme in list(self._esmes.values()):
            await esme.deliver_sm("10086", text.encode(), source_addr=user)

    async def drop_sessions(self) -> None:
        """Connection loss: unbind every ESME; clients must re-bind."""
        for esme in list(self._esmes.values()):
            with contextlib.suppress(Exception):
                await esme.unbind()
        self._esmes.clear()

    def bound(self) -> int:
        return len(self._esmes)
