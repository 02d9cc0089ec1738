"""Keys, rate limits and log masking (SPEC §7)."""

from __future__ import annotations

import asyncio
import io
import logging

from shared.auth import KeyCache, Principal, Role, TokenBucket, hash_key, issue_key, key_id_of
from shared.logging import JsonFormatter, mask


def test_issued_key_is_stored_only_as_its_hash_and_names_its_id() -> None:
    key = issue_key()
    assert key.key_hash == hash_key(key.secret) and key.secret not in key.key_hash
    assert key_id_of(key.secret) == key.key_id


def test_two_issued_keys_differ() -> None:
    assert issue_key().secret != issue_key().secret


def test_admin_role_implies_every_role() -> None:
    admin = Principal("k", "n", frozenset({Role.ADMIN}), 1.0)
    viewer = Principal("k", "n", frozenset({Role.VIEWER}), 1.0)
    assert admin.has(Role.APPROVER) and not viewer.has(Role.INGEST)


def test_token_bucket_allows_the_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(burst_s=1.0, min_burst=10)
    assert bucket.take("k", rate_per_s=10, cost=10, now=0.0) == 0
    wait = bucket.take("k", rate_per_s=10, cost=5, now=0.0)
    assert wait == 0.5
    assert bucket.take("k", rate_per_s=10, cost=5, now=0.5) == 0


def test_key_cache_reloads_on_a_miss_but_at_most_once_a_second() -> None:
    key = issue_key()
    table: list[tuple[str, Principal]] = []
    loads = 0

    async def loader() -> list[tuple[str, Principal]]:
        nonlocal loads
        loads += 1
        return list(table)

    async def scenario() -> None:
        cache = KeyCache(loader, ttl_s=60, miss_reload_s=1000)
        assert await cache.resolve(key.secret) is None
        table.append((key.key_hash, Principal(key.key_id, "n", frozenset(), 1.0)))
        assert await cache.resolve(key.secret) is None  # within the miss window: no reload
        assert loads == 1

    asyncio.run(scenario())


def test_phone_numbers_are_masked() -> None:
    assert (
        mask("sent to 13812341234 and +8613912345678") == "sent to 138****1234 and +86139****5678"
    )


def test_keys_are_masked_to_their_public_prefix() -> None:
    key = issue_key()
    masked = mask(f"auth failed for {key.secret}")
    assert key.secret not in masked and f"eng_{key.key_id}_***" in masked


def test_json_log_lines_are_masked_including_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("test.masking")
    logger.addHandler(handler)
    logger.propagate = False
    key = issue_key()
    logger.warning("send to %s", "13812341234", extra={"key": key.secret})
    line = stream.getvalue()
    assert "13812341234" not in line and key.secret not in line
    assert '"service":"test"' in line and "138****1234" in line
