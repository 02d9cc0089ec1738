"""shared.kafka turns uvloop's RuntimeError on a reset connection into aiokafka's connection
error (aio-libs/aiokafka#1038), so the producer's sender and the consumer's fetcher survive."""

from __future__ import annotations

import asyncio

import uvloop
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

import shared.kafka  # noqa: F401  (applies the patch)


async def _reset_connection_then_send() -> BaseException:
    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    srv = await asyncio.start_server(server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    conn = AIOKafkaConnection("127.0.0.1", port)
    conn._reader, conn._writer = await asyncio.open_connection("127.0.0.1", port)
    conn._read_task = asyncio.get_running_loop().create_future()  # a connected one has a reader
    conn._versions = {MetadataRequest.API_KEY: (0, 0)}  # as learnt from ApiVersions
    conn._writer.transport.abort()  # the transport is closed under aiokafka's feet
    await asyncio.sleep(0.05)
    try:
        conn.send(MetadataRequest([]))
    except BaseException as exc:
        return exc
    finally:
        srv.close()
    raise AssertionError("send on a closed transport raised nothing")


def test_a_write_on_a_closed_uvloop_transport_is_a_connection_error() -> None:
    exc = uvloop.run(_reset_connection_then_send())
    assert isinstance(exc, KafkaConnectionError), repr(exc)
    assert type(exc.__cause__) is RuntimeError


def test_without_the_patch_uvloop_raises_runtime_error() -> None:
    """The premise: remove the patch and aiokafka lets uvloop's RuntimeError escape."""
    patched = AIOKafkaConnection.send
    original = patched.__closure__[0].cell_contents
    AIOKafkaConnection.send = original
    try:
        exc = uvloop.run(_reset_connection_then_send())
    finally:
        AIOKafkaConnection.send = patched
    assert type(exc) is RuntimeError, repr(exc)
    assert "closed" in str(exc)


def test_aiokafka_errors_pass_through_unchanged() -> None:
    """aiokafka's errors derive from RuntimeError; the patch must not swallow them."""
    from aiokafka.errors import IncompatibleBrokerVersion

    class Unsendable:
        def prepare(self, versions: object) -> object:
            raise IncompatibleBrokerVersion("no such API version")

    async def send() -> None:
        conn = AIOKafkaConnection("127.0.0.1", 9)
        conn._writer = object()
        conn.send(Unsendable())

    try:
        uvloop.run(send())
    except IncompatibleBrokerVersion:
        return
    raise AssertionError("IncompatibleBrokerVersion did not come through")
