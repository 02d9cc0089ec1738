"""The peer: per-user daily message counts with Quix Streams (the best-known Python stream
processor), over the same topic. Runs in its own venv (Quix pins an older pydantic).

    python bench/peer_quix.py BOOTSTRAP TOPIC RECORDS TIMEZONE
Prints one JSON line: {"records": n, "seconds": t, "users_days": k}.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


def main() -> None:
    from quixstreams import Application, State

    bootstrap, topic, total, tz_name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    tz = ZoneInfo(tz_name)
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-peer-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        use_changelog_topics=False,
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
        processing_guarantee="at-least-once",
        loglevel="WARNING",
    )
    sdf = app.dataframe(app.topic(topic, value_deserializer="json"))
    user_days: set[str] = set()

    def count(value: dict[str, Any], state: State) -> None:
        if value.get("type") == "message" and value.get("client") != "sms":
            day = datetime.fromisoformat(value["occurred_at"]).astimezone(tz).date().isoformat()
            state.set(day, (state.get(day) or 0) + 1)
            user_days.add(f"{value['user_id']}:{day}")

    sdf = sdf.update(count, stateful=True)
    start = time.perf_counter()
    app.run(sdf, count=total, timeout=600, collect=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"records": total, "seconds": seconds, "users_days": len(user_days)}))


if __name__ == "__main__":
    main()
