"""Message templates (SPEC §6): named placeholders checked when saved, SMS length accounted.

`{name}` is a placeholder; `{{` and `}}` are literal braces. A template declares its
placeholders; the text must use exactly those (an unknown or unused one is an error naming it),
and rendering needs every one of them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

CATEGORIES = ("reward", "marketing", "service")
DEFAULT_LOCALE = "zh-CN"
MAX_TEXT = 1000
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

# GSM 03.38 basic alphabet (plus the escaped extension characters, which take two septets).
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€")


class TemplateError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int  # SMS parts


def placeholders_in(text: str) -> list[str]:
    """The placeholder names a text uses, in order of first use; malformed braces raise."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError("text", f"malformed braces ({exc})") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _NAME.match(name) or spec or conversion:
            raise TemplateError("text", f"'{{{name}}}' is not a placeholder (use {{lower_snake}})")
        if name not in names:
            names.append(name)
    return names


def validate(text: str, declared: list[str]) -> None:
    """The text must use exactly the declared placeholders."""
    if not text.strip():
        raise TemplateError("text", "must not be empty")
    if len(text) > MAX_TEXT:
        raise TemplateError("text", f"longer than {MAX_TEXT} characters")
    used = placeholders_in(text)
    for name in declared:
        if not _NAME.match(name):
            raise TemplateError("placeholders", f"'{name}' is not a valid placeholder name")
    unknown = [n for n in used if n not in declared]
    if unknown:
        raise TemplateError("text", f"unknown placeholder '{{{unknown[0]}}}' (declare it)")
    unused = [n for n in declared if n not in used]
    if unused:
        raise TemplateError("placeholders", f"'{unused[0]}' is declared but not used in text")


def locales_to_try(locale: str) -> tuple[str, ...]:
    """A message in a locale without its own template falls back to the default locale's."""
    return (locale,) if locale == DEFAULT_LOCALE else (locale, DEFAULT_LOCALE)


def in_locale(texts: Mapping[str, str], locale: str) -> str | None:
    """The text for `locale` among a template's `texts` by locale, else the default's."""
    for candidate in locales_to_try(locale):
        if candidate in texts:
            return texts[candidate]
    return None


def render(text: str, params: Mapping[str, object]) -> str:
    missing = [n for n in placeholders_in(text) if n not in params]
    if missing:
        raise TemplateError("params", f"missing placeholder '{missing[0]}'")
    return text.format_map({k: str(v) for k, v in params.items()})


def sms_segments(text: str) -> Segments:
    """How an SMS is encoded and split: GSM-7 160/153 septets, else UCS-2 70/67 code units."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        units = sum(2 if c in _GSM7_EXT else 1 for c in text)
        single, part, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-be")) // 2  # astral characters take two units
        single, part, encoding = 70, 67, "UCS-2"
    count = 1 if units <= single else -(-units // part)
    return Segments(encoding, units, count)


def sms_length(channel: str, text: str, placeholders: list[str]) -> Segments | None:
    """An SMS template's length with its placeholders empty (a lower bound); None for IM."""
    if channel != "sms":
        return None
    return sms_segments(text.format_map(dict.fromkeys(placeholders, "")))
