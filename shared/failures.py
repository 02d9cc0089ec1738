"""Which failures a retry can help, and how a failure's reason is written down (SPEC §16).

Consumers (shared/consumer.py) and settlement (services/rewards/usecases/settlement.py) ask
the same two questions of an exception: is it transient — the database or broker unreachable, a
serialization failure: the same work later may succeed — or does it belong to the input (a
data error, a constraint violation, an exception from the domain), which fails the same way
again and must be isolated? And what do we record as its reason?
"""

from __future__ import annotations

import re

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.errors import Unavailable
from shared.logging import mask


class Transient(Exception):
    """Raised by callers for a fault that says nothing about the work (e.g. a stale batch)."""


TRANSIENT, DATA, UNKNOWN = "transient", "data", "unknown"
# SQLSTATE classes: 22 data exception, 23 integrity constraint violation, 54 program limit
# exceeded (a value too large to index): the same records fail again, whatever the retry.
_DATA_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})
# 08 connection, 25 transaction state (25P03: ended by the idle-in-transaction limit), 40
# serialization/deadlock, 53 resources, 55 lock/object state, 57 operator intervention (admin
# shutdown, cancel), 58 system error: another attempt may well succeed.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "25", "40", "53", "55", "57", "58"})
DATA_EXCEPTIONS = (ValueError, ArithmeticError, TypeError, KeyError, IndexError, UnicodeError)
UNKNOWN_RETRIES = 3


def failure_kind(exc: BaseException) -> str:
    """TRANSIENT (retry the same work later), DATA (the input is at fault: isolate it) or
    UNKNOWN (probably a bug: retry a few times, then isolate)."""
    if isinstance(exc, Transient | KafkaError | OSError | TimeoutError | Unavailable):
        return TRANSIENT
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None)
        if isinstance(state, str) and state[:2] in _DATA_SQLSTATE_CLASSES:
            return DATA
        cause = exc.orig.__cause__ if exc.orig is not None else None
        if state is None and isinstance(cause, ValueError):
            return DATA  # the driver could not encode a parameter (e.g. beyond 64 bits)
        if (
            state is None
            or exc.connection_invalidated
            or isinstance(exc, OperationalError)
            or state[:2] in _TRANSIENT_SQLSTATE_CLASSES
        ):
            return TRANSIENT
        return UNKNOWN  # e.g. 42xxx: our SQL is wrong — a bug, not the record
    if isinstance(exc, DATA_EXCEPTIONS):
        return DATA
    return UNKNOWN


def is_transient(exc: BaseException) -> bool:
    """A fault that says nothing about the work: retry it unchanged, later."""
    return failure_kind(exc) == TRANSIENT


REASON_CHARS = 300
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@]+@")
_SECRET_VALUE = re.compile(
    r"(?i)\b(password|passwd|secret|token|api[_-]?key|authorization)(\s*[=:]\s*)\S+"
)


def failure_reason(exc: BaseException) -> str:
    """One line naming the exception and its message, at most 300 chars, without credentials,
    API keys or phone numbers (it is shown by the API and kept in the database).

    A database error gives the driver's message only: SQLAlchemy's text would add the
    statement's parameters, which are data.
    """
    if isinstance(exc, ValidationError):
        message = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        text = f"{exc.title} is invalid: {message}"
    elif isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig.__cause__ or exc.orig
        text = f"{type(cause).__name__}: {cause}"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = mask(_SECRET_VALUE.sub(r"\1\2***", text))
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
