"""Every rule kind by its name. Settlement, simulation, real-time evaluation and activation go
through here, never through the kinds' classes: a new kind is a module beside this one, its
tests, and its entry in `KINDS` and `AnyRule`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from services.rewards.domain.rules import lottery, rank, scaled, threshold
from services.rewards.domain.rules.base import PeriodEndKind, RealTimeKind
from services.rewards.domain.rules.lottery import LotteryRule
from services.rewards.domain.rules.rank import RankRule
from services.rewards.domain.rules.scaled import ScaledRule
from services.rewards.domain.rules.threshold import ThresholdRule

AnyRule = RankRule | ThresholdRule | LotteryRule | ScaledRule
Kind = PeriodEndKind[Any] | RealTimeKind[Any]

KINDS: Mapping[str, Kind] = MappingProxyType(
    {k.name: k for k in (rank.KIND, threshold.KIND, lottery.KIND, scaled.KIND)}
)


def kind_of(rule: AnyRule) -> Kind:
    return KINDS[rule.kind]


def period_end(rules: Iterable[AnyRule]) -> list[tuple[AnyRule, PeriodEndKind[Any]]]:
    """The rules settled once per period, each with its kind, in campaign order."""
    out: list[tuple[AnyRule, PeriodEndKind[Any]]] = []
    for rule in rules:
        kind = kind_of(rule)
        if isinstance(kind, PeriodEndKind):  # the kind's shape, not the rule's class
            out.append((rule, kind))
    return out


def real_time(rules: Iterable[AnyRule]) -> list[tuple[AnyRule, RealTimeKind[Any]]]:
    """The rules evaluated as metric values arrive, each with its kind, in campaign order."""
    out: list[tuple[AnyRule, RealTimeKind[Any]]] = []
    for rule in rules:
        kind = kind_of(rule)
        if isinstance(kind, RealTimeKind):
            out.append((rule, kind))
    return out
