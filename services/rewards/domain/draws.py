"""Verifiable draws (SPEC §5).

Before the period: a random seed is chosen and only SHA-256(seed) is published. At draw time the
entries are frozen (sorted, digest = SHA-256 of the entries joined by newlines); the winners
are the entries with the smallest HMAC-SHA256(key=seed, message=entry). An entry is a user id
(one ticket each) or, when tickets come from a metric, `user#n` for a user's n-th ticket.
Anyone holding the seed and the entries can recompute it all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable


def new_seed() -> str:
    return secrets.token_hex(32)


def commitment(seed: str) -> str:
    """What is published before the period: SHA-256 of the seed's UTF-8 bytes, hex."""
    return hashlib.sha256(seed.encode()).hexdigest()


def frozen(entries: Iterable[str]) -> list[str]:
    return sorted(entries)


def entries_digest(entries: list[str]) -> str:
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def stand_in_seed(campaign_id: str, rule_id: str, period: str) -> str:
    """What a simulation draws with before the real draw: a simulation must never use (and so
    reveal) a seed that is still secret."""
    return commitment(f"simulation:{campaign_id}:{rule_id}:{period}")


def ticket_entries(user_id: str, tickets: int) -> list[str]:
    """A user's numbered tickets, `user#1` … `user#n` (one entry per ticket)."""
    return [f"{user_id}#{n}" for n in range(1, tickets + 1)]


def entrant(entry: str) -> str:
    return entry.partition("#")[0]


def draw(seed: str, entries: Iterable[str], winners: int, repeat_winners: bool) -> list[str]:
    """Winning entries, best first; without repeats a user's later tickets are skipped."""
    key = seed.encode()
    ranked = sorted(entries, key=lambda e: hmac.new(key, e.encode(), hashlib.sha256).digest())
    if repeat_winners:
        return ranked[:winners]
    out: list[str] = []
    seen: set[str] = set()
    for entry in ranked:
        who = entrant(entry)
        if who not in seen:
            seen.add(who)
            out.append(entry)
            if len(out) == winners:
                break
    return out
