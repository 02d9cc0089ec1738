"""Text PostgreSQL and UTF-8 can carry: no NUL, no lone surrogates, no other C0 controls but tab
and newlines. Anything else is refused where it enters (a 4xx naming the field), never found
later by a database that cannot store it (a 500, or a consumer stuck on a poison batch)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, model_validator

_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def check_text(value: str) -> str:
    if (m := _UNSAFE.search(value)) is not None:
        raise ValueError(f"contains a character that cannot be stored (U+{ord(m.group()):04X})")
    return value


def check_tree(value: Any, path: str = "") -> None:
    """Every string (keys too) of a decoded JSON value; the error names where."""
    if isinstance(value, str):
        try:
            check_text(value)
        except ValueError as exc:
            raise ValueError(f"{path or 'value'}: {exc}") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            check_tree(k, f"{path}.{k}" if path else str(k))
            check_tree(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_tree(v, f"{path}[{i}]")


SafeText = Annotated[str, AfterValidator(check_text)]


class SafeTextModel(BaseModel):
    """A model whose input, however nested, carries only storable text."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        check_tree(data)
        return data
