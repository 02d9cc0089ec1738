"""Structured JSON logs that never show a phone number or an API key in clear (SPEC §7)."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_PHONE = re.compile(r"(?<!\d)(\+?86)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_KEY = re.compile(r"\b(eng_[0-9a-f]{8})_[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(?i)(bearer\s+)(?!eng_)(\S{4})\S+")


def mask(text: str) -> str:
    """Mask phone numbers to `138****1234` and API keys to their public prefix."""
    text = _PHONE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(4)}", text)
    text = _KEY.sub(r"\1_***", text)
    return _BEARER.sub(r"\1\2***", text)


_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return mask(orjson.dumps(entry, default=str).decode())


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route every logger through one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
