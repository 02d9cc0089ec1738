"""API-key authentication with roles (SPEC §7).

Keys look like `eng_<key id>_<secret>`; only the SHA-256 of the whole key is stored (keys carry
256 bits of randomness, so a slow password hash buys nothing). The key id is the public part
that appears in logs and in the `source` of events.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    INGEST = "ingest"  # a server relay of client event types (SPEC §14)
    PLATFORM = "platform"  # the IM platform's servers: every event type, acting for any user
    IMPORTER = "importer"
    VIEWER = "viewer"
    CAMPAIGN_OWNER = "campaign_owner"
    APPROVER = "approver"
    ADMIN = "admin"
    FULFILLER = "fulfiller"  # the systems that credit rewards report fulfilment (SPEC §11)


KEY_PREFIX = "eng_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's public id, its roles, its event rate limit and, when the key
    is narrowed, the event types it may post (None = every type its roles allow)."""

    key_id: str
    name: str
    roles: frozenset[Role]
    rate_per_s: float
    event_types: frozenset[str] | None = None
    # The team whose campaigns, broadcasts and templates this key works on (issue 18); None =
    # no team (the objects without one). An admin acts on every team's objects.
    team: str | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles or Role.ADMIN in self.roles


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    secret: str  # shown once, never stored
    key_hash: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key() -> IssuedKey:
    key_id = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return IssuedKey(key_id=key_id, secret=secret, key_hash=hash_key(secret))


def key_id_of(key: str) -> str | None:
    """The public id embedded in a well-formed key (safe to log), else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, _ = key[len(KEY_PREFIX) :].partition("_")
    return key_id if sep and len(key_id) == 8 else None


KeyLoader = Callable[[], Awaitable[Iterable[tuple[str, Principal]]]]


class KeyCache:
    """Resolves key hashes to principals from an in-memory copy of the key table.

    The copy is reloaded every `ttl_s`, and on a miss at most once per `miss_reload_s`, so a
    flood of wrong keys costs no database round trips and a new key works within a second.
    """

    def __init__(self, loader: KeyLoader, ttl_s: float = 30.0, miss_reload_s: float = 1.0) -> None:
        self._loader = loader
        self._ttl_s = ttl_s
        self._miss_reload_s = miss_reload_s
        self._by_hash: dict[str, Principal] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _reload(self, min_age_s: float) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at < min_age_s:
                return  # another request reloaded meanwhile
            self._by_hash = dict(await self._loader())
            self._loaded_at = time.monotonic()

    async def resolve(self, key: str) -> Principal | None:
        digest = hash_key(key)
        age = time.monotonic() - self._loaded_at
        if age > self._ttl_s:
            await self._reload(self._ttl_s)
        principal = self._by_hash.get(digest)
        if principal is None and time.monotonic() - self._loaded_at > self._miss_reload_s:
            await self._reload(self._miss_reload_s)
            principal = self._by_hash.get(digest)
        # Timing of the lookup reveals nothing useful: it is keyed by a hash of the secret.
        return principal


class TokenBucket:
    """Per-key rate limit in events per second, with a burst of `burst_s` seconds of rate."""

    def __init__(self, burst_s: float = 2.0, min_burst: float = 500.0) -> None:
        self._burst_s = burst_s
        self._min_burst = min_burst
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str, rate_per_s: float, cost: float, now: float | None = None) -> float:
        """Spend `cost` tokens; return 0 if allowed, else the seconds to wait before retrying."""
        now = time.monotonic() if now is None else now
        capacity = max(rate_per_s * self._burst_s, self._min_burst)
        tokens, last = self._state.get(key_id, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate_per_s)
        if tokens >= cost:
            self._state[key_id] = (tokens - cost, now)
            return 0.0
        self._state[key_id] = (tokens, now)
        return (cost - tokens) / rate_per_s if rate_per_s > 0 else 60.0
