"""What a channel provider is to the dispatcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ProviderError(Exception):
    """The message was not accepted. `retryable` false: retrying cannot help (try fallback)."""

    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Throttled(ProviderError):
    """The provider asks us to slow down: the dispatcher backs off instead of dropping."""


@dataclass(frozen=True, slots=True)
class SendResult:
    provider: str
    message_id: str
    delivered: bool = False  # True when the provider confirms delivery at once (sandbox)


class Provider(Protocol):
    name: str

    async def send(self, notification_id: int, user_id: str, body: str) -> SendResult: ...
