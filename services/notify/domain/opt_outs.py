"""Opt-outs (SPEC §6): marketing messages are not sent to a user who opted out, through the API
or by replying an unsubscribe word to one of our SMS."""

from __future__ import annotations

UNSUBSCRIBE = frozenset({"TD", "T", "STOP", "UNSUBSCRIBE", "退订"})


def is_unsubscribe(reply: str) -> bool:
    """An SMS reply that asks to stop marketing messages ("TD" = 退订)."""
    return reply.strip().upper() in UNSUBSCRIBE
