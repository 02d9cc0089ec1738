"""Reading a JSON request body under hard limits: size, gzip bombs, content type, nesting."""

from __future__ import annotations

import zlib

import orjson
from fastapi import Request

from shared.contract import MAX_BODY_BYTES
from shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_json_body(request: Request, limit: int = MAX_BODY_BYTES) -> object:
    """Decode the body as JSON; at most `limit` bytes on the wire and after gunzip."""
    if not _is_json(request.headers.get("content-type", "")):
        raise UnsupportedMediaType("send events as application/json")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise UnsupportedMediaType(
            f"content-encoding '{encoding}' is not supported; use gzip", code="unsupported_encoding"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; at most {limit}")

    if encoding == "identity" and declared is not None and declared.isdigit():
        return _parse(await request.body())  # length known and within the limit: read at once

    too_large = PayloadTooLarge(f"body exceeds {limit} bytes (after decompression)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    chunks: list[bytes] = []
    size = raw_size = 0
    async for chunk in request.stream():
        raw_size += len(chunk)
        if raw_size > limit:
            raise too_large
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk, limit + 1 - size)
            except zlib.error:
                raise BadRequest("body is not valid gzip", code="invalid_gzip") from None
            if inflater.unconsumed_tail:
                raise too_large  # more output pending than the limit allows: a bomb, or too big
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    if inflater is not None and not inflater.eof:
        raise BadRequest("gzip body is truncated", code="invalid_gzip")
    return _parse(b"".join(chunks))


def _parse(body: bytes) -> object:
    if not body:
        raise BadRequest("body is empty", code="invalid_body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None
