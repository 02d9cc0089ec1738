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
from collections.abc import Awaitable, Callable

import smpp34

from services.notify.providers.base import ProviderError, SendResult, Throttled

log = logging.getLogger(__name__)
ReceiptHandler = Callable[[str, bool, str], Awaitable[None]]  # message id, delivered, stat
ReplyHandler = Callable[[str, str], Awaitable[None]]  # from (user), text
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
    ) -> None:
        self._host, self._port = host, port
        self._system_id, self._password = system_id, password
        self._source_addr = source_addr
        self._on_receipt, self._on_reply = on_receipt, on_reply
        self._bind_timeout_s = bind_timeout_s
        self._session: smpp34.Smsc | None = None
        self._bound = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_bound())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._session.unbind(), 2)

    async def _keep_bound(self) -> None:
        delay = 0.2
        while True:
            try:
                client = smpp34.Client(
                    self._host, self._port, self._system_id, self._password, bind_type="TRX"
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
            try:
                if event.esm_class & 0x04:  # a delivery receipt
                    receipt = parse_receipt(text)
                    if receipt is not None:
                        await self._on_receipt(*receipt)
                else:  # a mobile-originated reply
                    await self._on_reply(event.source_addr, text)
            except Exception:
                log.exception("smpp event not applied")

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
            if len(payload) <= MAX_SHORT_MESSAGE:
                resp = await session.submit_sm(user_id, payload, **fields)  # type: ignore[arg-type]
            else:
                tlv = smpp34.Tlv(smpp34.TLV_MESSAGE_PAYLOAD, payload)  # type: ignore[attr-defined]
                resp = await session.submit_sm(user_id, b"", tlvs=[tlv], **fields)  # type: ignore[arg-type]
        except Exception as exc:  # connection lost mid-send: retry after re-bind
            raise ProviderError(f"smpp: {type(exc).__name__}") from None
        if resp.is_success and resp.message_id:
            return SendResult(self.name, resp.message_id)
        status = resp.command_status
        if status in _THROTTLED:
            raise Throttled(f"smpp: throttled (0x{status:08x})")
        raise ProviderError(f"smpp: refused (0x{status:08x})", retryable=status in _RETRYABLE)
