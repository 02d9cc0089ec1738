"""Anomaly flags as rule inputs (SPEC §14): scoring flags user-days and group-months, each flag
with its reason and values; a condition names them as 0/1 values.

`group.month.flagged` is 1 when a group's month carries any flag, `group.month.flags.<name>`
when it carries that one; likewise `user.day.flagged` and `user.day.flags.<name>`. The names
are the flags scoring publishes: an unknown name is a validation error, not a condition that
silently never holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

USER_DAY_FLAGS = frozenset({"message_rate", "points_spike", "lockstep"})
GROUP_MONTH_FLAGS = frozenset({"late_joins", "dominant_member"})
FLAGGED = "flagged"
FLAGS_SCOPE = "flags"  # `<entity>.<grain>.flags.<name>`

Flag = Mapping[str, Any]  # {"name", "reason", "values"}, as on engage.metrics.v1


def flag_values(flags: Iterable[Flag], names: Iterable[str]) -> dict[str, float]:
    """0/1 values of `flagged` and each known `flags.<name>`, from a record's flags."""
    present = {str(f.get("name")) for f in flags}
    out = {f"{FLAGS_SCOPE}.{n}": 1.0 if n in present else 0.0 for n in names}
    out[FLAGGED] = 1.0 if present else 0.0
    return out
