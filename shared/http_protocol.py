"""uvicorn's HTTP/1.1 protocol with a deadline on the request head (issue 18, slow clients).

uvicorn times out an idle kept-alive connection, and shared/http.py's body limit times out a
body still arriving, but nothing bounds the *head*: a client that sends one header byte every
few seconds holds its connection, and a few thousand such clients hold every connection a
process admits (`--limit-concurrency`). This protocol gives each request head
`ENGAGE_HEADER_READ_TIMEOUT_S` (10 s) from the moment the connection opens or the previous
response ends: past it the connection is closed, with a 408 when part of a head had arrived
(silently when none had: an idle connection). Data arriving does not extend the deadline — a
drip is exactly what it is for.

Selected with `uvicorn --http shared.http_protocol:HeaderDeadlineProtocol` (engage/stack.py) or
`http=HeaderDeadlineProtocol` (engage/cli.py).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_READ_TIMEOUT_S = "ENGAGE_HEADER_READ_TIMEOUT_S"
DEFAULT_HEADER_READ_TIMEOUT_S = 10.0
_TIMEOUT_BODY = (
    b'{"type":"/problems/request_timeout","title":"Request Timeout","status":408,'
    b'"detail":"the request head did not arrive in time","code":"request_timeout"}'
)
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


def header_read_timeout_s() -> float:
    raw = os.environ.get(HEADER_READ_TIMEOUT_S)
    value = float(raw) if raw else DEFAULT_HEADER_READ_TIMEOUT_S
    if value <= 0:
        raise ValueError(f"{HEADER_READ_TIMEOUT_S} must be positive, not {raw}")
    return value


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose request heads must arrive within the deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_read_timeout_s()
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_started = False  # some byte of the awaited head arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is not None:
            self._head_started = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's head, on a kept-alive connection

    def _arm(self) -> None:
        self._disarm()
        self._head_started = False
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered (its head arrived): not ours to cut
        if self._head_started:  # an answer to a request that began
            self.transport.write(TIMEOUT_RESPONSE)
        # else an idle connection: closed silently, as idle connections are — a 408 written
        # unasked could be read by a client as the answer to the request it is just sending
        self.transport.close()
