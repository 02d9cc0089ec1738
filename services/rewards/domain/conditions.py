"""The condition language of SPEC §5: JSON trees of `all` / `any` / `not` over metric leaves.

`{"metric": "user.day.online_points", "op": ">=", "value": 4}` is a leaf. Metrics are named
`<entity>.<scope>.<field>`; a metric with no stored value reads as 0 (no activity). Parsing
reports the exact path of the first problem (`all[1].op: ...`), so an API error names the
offending part of a rule.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from services.rewards.domain.flags import FLAGGED, GROUP_MONTH_FLAGS, USER_DAY_FLAGS
from shared.metric_fields import (
    DAY_POINTS,
    GROUP_MONTH_COUNTERS,
    USER_DAY_COUNTERS,
    USER_MONTH_COUNTERS,
)

# What scoring publishes (SPEC §4) plus what rewards derives; the scope decides the source:
# user.day from the changelog; user.week / user.month / user.year / user.campaign /
# user.period (= the rule's own period) are the day values summed over that span up to the
# evaluated day, on the rule's days of the week only (SPEC §9, §10), with `active` (messages ≥ 1
# on some day) and `active_days`; user.prev_month = the stored month before the period;
# `user.member_of_enrolled_group` = 1 when the user is a member of an enrolled group at the
# period's end; `user.campaign.new_friends_added` = friends made in the window (up to the
# evaluated day) whose own first_seen lies in the window, not after that day; group.year = a
# year's group-months summed (vitality under the rule's weights).
# Anomaly flags (domain/flags.py) read as 0/1: `user.day.flagged`, `user.day.flags.<name>`, and
# the same of `group.month`.
USER_DAY_FIELDS = frozenset(USER_DAY_COUNTERS + DAY_POINTS)
USER_MONTH_FIELDS = frozenset((*USER_MONTH_COUNTERS, "active"))
SUMMED_FIELDS = USER_DAY_FIELDS | {"active", "active_days"}
GROUP_MONTH_FIELDS = frozenset(
    (*GROUP_MONTH_COUNTERS, "vitality", "active_ratio", "effective_active_members")
)
GROUP_YEAR_FIELDS = frozenset(
    ("activity_points", "points_growth", "bonus_points", "group_messages", "vitality",
     "members", "active_members")
)  # fmt: skip
NEW_FRIENDS = "new_friends_added"  # friends made whose own first_seen is inside the window
NEW_FRIENDS_METRIC = f"user.campaign.{NEW_FRIENDS}"
SUMMED_SCOPES = ("user.week", "user.month", "user.year", "user.campaign", "user.period")
MEMBER_OF_ENROLLED_GROUP = "user.member_of_enrolled_group"
SCOPES: dict[str, frozenset[str]] = {
    "user": frozenset({"member_of_enrolled_group"}),
    "user.day": USER_DAY_FIELDS | {FLAGGED},
    "user.day.flags": USER_DAY_FLAGS,
    "user.week": SUMMED_FIELDS,
    "user.month": SUMMED_FIELDS,
    "user.year": SUMMED_FIELDS,
    "user.period": SUMMED_FIELDS,
    "user.prev_month": USER_MONTH_FIELDS,
    "user.campaign": SUMMED_FIELDS | {NEW_FRIENDS},
    "group.month": GROUP_MONTH_FIELDS | {FLAGGED},
    "group.month.flags": GROUP_MONTH_FLAGS,
    "group.year": GROUP_YEAR_FIELDS,
}


def is_summed(metric: str) -> bool:
    """A day value summed over a span (domain/rules/sums.py), not a stored or derived one."""
    scope, _, name = metric.rpartition(".")
    return scope in SUMMED_SCOPES and name in SUMMED_FIELDS


ALL_METRICS = tuple(sorted(f"{scope}.{f}" for scope, fs in SCOPES.items() for f in fs))

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
MAX_DEPTH = 8
MAX_LEAVES = 64


class ConditionError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


@dataclass(frozen=True, slots=True)
class Leaf:
    metric: str
    op: str
    value: float


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class NotOf:
    item: Node


Node: TypeAlias = Leaf | AllOf | AnyOf | NotOf
Values: TypeAlias = Mapping[str, float]


def nearest_metric(name: str, allowed_scopes: Iterable[str] | None = None) -> str | None:
    """The valid metric name closest to `name` (allowed here first), for "did you mean"."""
    allowed = None if allowed_scopes is None else set(allowed_scopes)
    here = [m for m in ALL_METRICS if allowed is None or _scope_of(m) in allowed]
    for pool in (here, ALL_METRICS):
        close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
        if close:
            return close[0]
    return None


def _scope_of(metric: str) -> str:
    return metric.rpartition(".")[0].removesuffix(".flags")


def parse_metric(name: Any, allowed_scopes: Iterable[str] | None = None, path: str = "") -> str:
    """Check a metric name (`user.day.messages`) and that its scope is allowed here; an unknown
    name is refused naming the nearest valid one."""
    if not isinstance(name, str):
        raise ConditionError(path, "a metric name must be a string")
    allowed = tuple(allowed_scopes) if allowed_scopes is not None else tuple(SCOPES)
    scope, _, field = name.rpartition(".")
    if scope not in SCOPES or field not in SCOPES[scope]:
        near = nearest_metric(name, allowed)
        hint = f"; did you mean {near}?" if near else ""
        if scope in SCOPES:
            where = f"fields of {scope}: {', '.join(sorted(SCOPES[scope]))}"
            what = "metric"
        else:
            where = f"scopes here: {', '.join(allowed)}"
            what = f"metric scope '{scope}' in metric"
        raise ConditionError(
            path, f"unknown {what} '{name}'{hint} ({where}; the glossary is docs/metrics.md)"
        )
    if _scope_of(name) not in allowed:  # flags go where their record's scope goes
        near = nearest_metric(f"{allowed[0]}.{field}", allowed) if allowed else None
        hint = f"; did you mean {near}?" if near else ""
        raise ConditionError(
            path, f"metric '{name}' is not available here (scopes here: {', '.join(allowed)}){hint}"
        )
    return name


def parse(tree: Any, allowed_scopes: Iterable[str] | None = None) -> Node:
    """A condition tree from its JSON form; `ConditionError` names the offending path."""
    allowed = tuple(allowed_scopes) if allowed_scopes is not None else tuple(SCOPES)
    leaves = 0

    def walk(node: Any, path: str, depth: int) -> Node:
        nonlocal leaves
        if depth > MAX_DEPTH:
            raise ConditionError(path, f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(node, dict):
            raise ConditionError(path, "a condition must be an object")
        keys = set(node)
        if keys & {"all", "any"}:
            if len(keys) != 1:
                raise ConditionError(path, "'all' / 'any' take no other keys")
            (key,) = keys
            items = node[key]
            if not isinstance(items, list) or not items:
                raise ConditionError(f"{path}{key}" if not path else f"{path}.{key}",
                                     "must be a non-empty list")  # fmt: skip
            prefix = f"{path}.{key}" if path else key
            parsed = tuple(walk(x, f"{prefix}[{i}]", depth + 1) for i, x in enumerate(items))
            return AllOf(parsed) if key == "all" else AnyOf(parsed)
        if "not" in keys:
            if len(keys) != 1:
                raise ConditionError(path, "'not' takes no other keys")
            return NotOf(walk(node["not"], f"{path}.not" if path else "not", depth + 1))
        if keys != {"metric", "op", "value"}:
            extra = sorted(keys - {"metric", "op", "value"})
            missing = sorted({"metric", "op", "value"} - keys)
            what = f"unknown key(s) {extra}" if extra else f"missing {missing}"
            raise ConditionError(path, f"a leaf is {{metric, op, value}}: {what}")
        here = f"{path}." if path else ""
        metric = parse_metric(node["metric"], allowed, f"{here}metric")
        op = node["op"]
        if op not in OPS:
            raise ConditionError(f"{here}op", f"'{op}' is not one of {', '.join(OPS)}")
        value = node["value"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConditionError(f"{here}value", "must be a number")
        if value != value or abs(value) > 1e15:
            raise ConditionError(f"{here}value", "must be a finite number within ±1e15")
        leaves += 1
        if leaves > MAX_LEAVES:
            raise ConditionError(path, f"more than {MAX_LEAVES} leaves")
        return Leaf(metric, op, float(value))

    return walk(tree, "", 0)


def dump(node: Node) -> dict[str, Any]:
    """The JSON form of a parsed tree (round-trips through `parse`)."""
    match node:
        case Leaf(metric, op, value):
            return {
                "metric": metric,
                "op": op,
                "value": int(value) if value.is_integer() else value,
            }
        case AllOf(items):
            return {"all": [dump(x) for x in items]}
        case AnyOf(items):
            return {"any": [dump(x) for x in items]}
        case NotOf(item):
            return {"not": dump(item)}
    raise TypeError(node)


def evaluate(node: Node, values: Values) -> bool:
    match node:
        case Leaf(metric, op, value):
            return OPS[op](float(values.get(metric, 0)), value)
        case AllOf(items):
            return all(evaluate(x, values) for x in items)
        case AnyOf(items):
            return any(evaluate(x, values) for x in items)
        case NotOf(item):
            return not evaluate(item, values)
    raise TypeError(node)


def explain(node: Node, values: Values) -> list[dict[str, Any]]:
    """Each leaf with the value it saw and whether it held: the grant's explanation."""
    match node:
        case Leaf(metric, op, value):
            actual = float(values.get(metric, 0))
            return [
                {
                    "metric": metric,
                    "op": op,
                    "value": value,
                    "actual": actual,
                    "holds": OPS[op](actual, value),
                }
            ]
        case AllOf(items) | AnyOf(items):
            return [leaf for x in items for leaf in explain(x, values)]
        case NotOf(item):
            return explain(item, values)
    raise TypeError(node)


def metrics_of(node: Node | None) -> set[str]:
    if node is None:
        return set()
    match node:
        case Leaf(metric, _, _):
            return {metric}
        case AllOf(items) | AnyOf(items):
            return set().union(*(metrics_of(x) for x in items))
        case NotOf(item):
            return metrics_of(item)
    raise TypeError(node)
