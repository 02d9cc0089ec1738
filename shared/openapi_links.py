"""OpenAPI `links` (3.0 §4.7.21): which operation a response feeds, and with which of its
values — the campaign just created to its approval, a broadcast to its cancel. They document the
API's workflows for a reader and drive schemathesis' stateful fuzzing (create → read → act)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

# `$response.body#/pointer`, `$request.path.name` and friends: the runtime expressions a link
# parameter may hold (OpenAPI 3.0 §4.7.20.4); the pointer is checked against the response schema.
_EXPRESSION = re.compile(
    r"^\$(response\.body#(?P<pointer>(/[^/]*)*)|request\.(path|query|header)\.(?P<name>[\w-]+))$"
)


@dataclass(frozen=True)
class Link:
    """`source`'s 2xx responses lead to `target` ("METHOD /path" each), its parameters taken
    from the response or the request as `parameters` say."""

    source: str
    target: str
    parameters: Mapping[str, str]
    description: str
    name: str = ""  # unique among the source's links; default: the target's operationId
    statuses: tuple[str, ...] = field(default=())  # default: every 2xx the source documents


class LinkError(ValueError):
    """A link names an operation, status, parameter or value the document does not have."""


def document_links(app: FastAPI, links: Iterable[Link]) -> None:
    """Add `links` to `app`'s OpenAPI document (wrapping whatever builds it now); a link that
    does not fit the document fails the build of the document, never silently."""
    original, wanted = app.openapi, tuple(links)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        add_links(schema, wanted)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def add_links(schema: dict[str, Any], links: Iterable[Link]) -> None:
    """Write each of `links` into `schema` (in place), checked against it."""
    for link in links:
        source, target = _operation(schema, link.source), _operation(schema, link.target)
        target_id = target.get("operationId")
        if not target_id:
            raise LinkError(f"{link.target} has no operationId to link to")
        declared = {p["name"] for p in target.get("parameters", []) if "$ref" not in p}
        unknown = sorted(set(link.parameters) - declared)
        if unknown:
            raise LinkError(f"{link.target} has no parameter(s) {unknown} ({link.source})")
        statuses = link.statuses or tuple(s for s in source["responses"] if s.startswith("2"))
        if not statuses:
            raise LinkError(f"{link.source} documents no 2xx response to link from")
        for status in statuses:
            response = source["responses"].get(status)
            if response is None:
                raise LinkError(f"{link.source} documents no {status} response")
            for expression in link.parameters.values():
                _check_expression(schema, response, expression, f"{link.source} {status}")
            name = link.name or target_id
            existing = response.setdefault("links", {})
            if name in existing:
                raise LinkError(f"{link.source} {status} has two links named {name}")
            existing[name] = {
                "operationId": target_id,
                "parameters": dict(link.parameters),
                "description": link.description,
            }


def _operation(schema: dict[str, Any], method_path: str) -> dict[str, Any]:
    method, _, path = method_path.partition(" ")
    operation = schema.get("paths", {}).get(path, {}).get(method.lower())
    if not isinstance(operation, dict):
        raise LinkError(f"no operation {method_path} in the document")
    return operation


def _check_expression(
    schema: dict[str, Any], response: dict[str, Any], expression: str, where: str
) -> None:
    found = _EXPRESSION.match(expression)
    if found is None:
        raise LinkError(f"{where}: {expression!r} is not a runtime expression")
    pointer = found.group("pointer")
    if pointer is None:
        return
    body = response.get("content", {}).get("application/json", {}).get("schema")
    if body is None:
        raise LinkError(f"{where}: {expression!r} reads a body the response does not have")
    node: Any = body
    for token in [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]:
        node = _resolve(schema, node)
        if token.isdigit() and node.get("type") == "array":
            node = node.get("items", {})
        elif token in node.get("properties", {}):
            node = node["properties"][token]
        else:
            raise LinkError(f"{where}: {expression!r}: the body schema has no {token!r}")


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, its local `$ref`s followed (FastAPI writes only `#/components/...` ones)."""
    while "$ref" in node:
        target: Any = schema
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node
