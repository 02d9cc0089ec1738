"""SMS over SMPP 3.4 to an SMSC (SPEC §6), with the `smpp34` client.

One transceiver session per replica, re-bound after a connection loss. Messages ask for a
delivery receipt; receipts (and mobile-originated replies such as "TD") arrive on the same
session at any later time and are handed to callbacks. Chinese text goes as UCS-2
(data_coding 8), other text as GSM-7-compatible ASCII (data_coding 0); anything longer than
one PDU travels in the message_payload parameter and the SMSC splits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import smpp34

from services.notify.providers.base import ProviderError, SendResult, Throttled

log = logging.getLogger(__name__)
Receipt = tuple[str, bool, str]  # message id, delivered, stat
ReceiptHandler = Callable[[list[Receipt]], Awaitable[None]]
ReplyHandler = Callable[[str, str], Coroutine[Any, Any, None]]  # from (user), text
_RECEIPT = re.compile(r"id:(?P<id>\S+).*?stat:(?P<stat>[A-Z]+)", re.S)
_THROTTLED = {smpp34.ESME_RTHROTTLED, smpp34.ESME_RMSGQFUL}  # type: ignore[attr-defined]
_RETRYABLE = _THROTTLED | {smpp34.ESME_RSYSERR, smpp34.ESME_RUNKNOWNERR}  # type: ignore[attr-defined]
MAX_SHORT_MESSAGE = 140


def encode(body: str) -> tuple[bytes, int]:
    """(bytes, data_coding): ASCII as-is (0), anything else UCS-2 big-endian (8)."""
    if body.isascii():
        return body.encode("ascii"), 0
    return body.encode("utf-16-be"), 8


def parse_receipt(text: str) -> tuple[str, bool, str] | None:
    """`id:<id> ... stat:DELIVRD ...` → (id, delivered, stat)."""
    m = _RECEIPT.search(text)
    if m is None:
        return None
    return m["id"], m["stat"] == "DELIVRD", m["stat"]


class SmppProvider:
    name = "smpp"

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        source_addr: str,
        on_receipt: ReceiptHandler,
        on_reply: ReplyHandler,
        bind_timeout_s: float = 5.0,
        window: int = 10,
    ) -> None:
        self._host, self._port = host, port
        self._system_id, self._password = system_id, password
        self._source_addr = source_addr
        self._on_receipt, self._on_reply = on_receipt, on_reply
        self._bind_timeout_s = bind_timeout_s
        self._window = window
        self._in_flight = asyncio.Semaphore(window)  # submit_sm awaiting their response
        self._session: smpp34.Smsc | None = None
        self._bound = asyncio.Event()
        self._receipts: asyncio.Queue[Receipt] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._keep_bound()),
            asyncio.create_task(self._apply_receipts()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._session.unbind(), 2)

    async def _keep_bound(self) -> None:
        delay = 0.2
        while True:
            try:
                client = smpp34.Client(
                    self._host,
                    self._port,
                    self._system_id,
                    self._password,
                    bind_type="TRX",
                    window_size=self._window,
                )
                session = await client.connect()
            except Exception as exc:  # refused, timed out, bind rejected: retry, say why
                log.warning("smpp bind failed", extra={"error": repr(exc)[:200]})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.2
            self._session = session
            self._bound.set()
            log.info("smpp bound", extra={"host": self._host, "port": self._port})
            try:
                await self._read(session)
            finally:
                self._bound.clear()
                self._session = None
            log.warning("smpp session ended; re-binding")

    async def _read(self, session: smpp34.Smsc) -> None:
        while True:
            try:
                event = await session.next()
            except Exception as exc:  # the session broke: re-bind
                log.warning("smpp read failed", extra={"error": repr(exc)[:200]})
                return
            if isinstance(event, smpp34.Disconnected):
                return
            text = event.short_message.decode("utf-16-be" if event.data_coding == 8 else "latin-1")
            # No database work here: a slow reader would stall the session's responses.
            if event.esm_class & 0x04:  # a delivery receipt
                receipt = parse_receipt(text)
                if receipt is not None:
                    self._receipts.put_nowait(receipt)
            else:  # a mobile-originated reply
                task = asyncio.create_task(self._on_reply(event.source_addr, text))
                self._tasks.append(task)
                task.add_done_callback(self._tasks.remove)

    async def _apply_receipts(self) -> None:
        """Receipts in batches: whatever arrived while the previous batch was applied."""
        while True:
            batch = [await self._receipts.get()]
            while not self._receipts.empty() and len(batch) < 1000:
                batch.append(self._receipts.get_nowait())
            try:
                await self._on_receipt(batch)
            except Exception:  # the database is away: put them back, try again shortly
                log.exception("receipts not applied; retrying")
                for receipt in batch:
                    self._receipts.put_nowait(receipt)
                await asyncio.sleep(1)

    async def send(self, notification_id: int, user_id: str, body: str) -> SendResult:
        try:
            await asyncio.wait_for(self._bound.wait(), self._bind_timeout_s)
        except TimeoutError:
            raise ProviderError("smpp: not bound") from None
        session = self._session
        if session is None:
            raise ProviderError("smpp: not bound")
        payload, coding = encode(body)
        fields: dict[str, object] = {"source_addr": self._source_addr, "data_coding": coding,
                                     "registered_delivery": 1}  # fmt: skip
        try:
            async with self._in_flight:
                if len(payload) <= MAX_SHORT_MESSAGE:
                    resp = await session.submit_sm(user_id, payload, **fields)  # type: ignore[arg-type]
                else:
                    tlv = smpp34.Tlv(smpp34.TLV_MESSAGE_PAYLOAD, payload)  # type: ignore[attr-defined]
                    resp = await session.submit_sm(user_id, b"", tlvs=[tlv], **fields)  # type: ignore[arg-type]
        except Exception as exc:  # connection lost mid-send: retry after re-bind
            raise ProviderError(f"smpp: {type(exc).__name__}: {exc}"[:200]) from None
        if resp.is_success and resp.message_id:
            return SendResult(self.name, resp.message_id)
        status = resp.command_status
        if status in _THROTTLED:
            raise Throttled(f"smpp: throttled (0x{status:08x})")
        raise ProviderError(f"smpp: refused (0x{status:08x})", retryable=status in _RETRYABLE)
