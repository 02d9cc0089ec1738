"""The IM platform's webhook (SPEC §6): a signed JSON POST per message.

Signature: `X-Engage-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` with
`X-Engage-Timestamp: <unix seconds>`, so the platform can reject forged or replayed calls.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from services.notify.providers.base import ProviderError, SendResult, Throttled


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class ImWebhookProvider:
    name = "im-webhook"

    def __init__(self, url: str, secret: str, timeout_s: float = 5.0) -> None:
        self._url = url
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, notification_id: int, user_id: str, body: str) -> SendResult:
        payload = orjson.dumps({"message_id": notification_id, "user_id": user_id, "text": body})
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Engage-Timestamp": ts,
            "X-Engage-Signature": signature(self._secret, ts, payload),
        }
        r = None
        for attempt in (1, 2):
            try:
                r = await self._client.post(self._url, content=payload, headers=headers)
                break
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # A pooled connection the platform had already closed: once more, fresh.
                if attempt == 2:
                    raise ProviderError(f"im: {type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                raise ProviderError(f"im: {type(exc).__name__}") from None
        assert r is not None
        if r.status_code == 429:
            raise Throttled("im: throttled (429)")
        if r.status_code >= 500:
            raise ProviderError(f"im: {r.status_code}")
        if r.status_code >= 400:
            raise ProviderError(f"im: refused ({r.status_code})", retryable=False)
        return SendResult(self.name, str(notification_id))

    async def close(self) -> None:
        await self._client.aclose()
