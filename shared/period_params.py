"""Days and months named in paths and queries (SPEC §16): real, inside the span, or a 422."""

from __future__ import annotations

from datetime import date

from shared.errors import ValidationFailed
from shared.timebounds import check_day


def period_param(field: str, label: str) -> date:
    """The first day of the day (YYYY-MM-DD) or month (YYYY-MM) `label` names.

    The route's pattern has already fixed the shape; this refuses what the pattern cannot see —
    a month 13, a 30 February, a year outside 2000–2099 — as a 422 naming `field`.
    """
    try:
        if len(label) not in (7, 10):
            raise ValueError("must look like 2026-11 or 2026-11-03")
        return check_day(date.fromisoformat(label if len(label) == 10 else f"{label}-01"))
    except ValueError as exc:
        raise ValidationFailed(
            f"{field}: {exc}", extra={"errors": [{"field": field, "message": str(exc)}]}
        ) from None
