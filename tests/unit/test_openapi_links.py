"""OpenAPI links (shared/openapi_links.py): every link each service documents leads to an
operation that exists, with parameters it declares, from values its source really returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from services.ingest.app import create_app as create_ingest
from services.notify.app import create_app as create_notify
from services.rewards.app import create_app as create_rewards
from services.scoring.app import create_app as create_scoring
from shared.openapi_links import Link, LinkError, add_links

SERVICES: dict[str, Callable[[], FastAPI]] = {
    "scoring": create_scoring,
    "rewards": create_rewards,
    "notify": create_notify,
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough configuration to build an app (nothing is connected to)."""
    monkeypatch.setenv("ENGAGE_KAFKA_BOOTSTRAP", "localhost:9")
    monkeypatch.setenv("ENGAGE_DATABASE_URL", "postgresql+asyncpg://u:p@localhost:9/engage")


def operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        op["operationId"]: op
        for ops in schema["paths"].values()
        for op in ops.values()
        if isinstance(op, dict) and "operationId" in op
    }


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_every_link_leads_to_an_operation_with_the_parameters_it_fills(
    service: str, env: None
) -> None:
    schema = SERVICES[service]().openapi()
    by_id = operations(schema)
    links = [
        link
        for op in by_id.values()
        for response in op["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert links, f"{service} documents no links"
    for link in links:
        target = by_id[link["operationId"]]
        declared = {p["name"] for p in target.get("parameters", [])}
        assert set(link["parameters"]) <= declared, link
        path_params = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
        assert path_params <= set(link["parameters"]), f"{link} leaves a path parameter unset"
        assert link["description"]


async def test_ingest_has_no_resource_to_link_to(env: None) -> None:
    """Ingest's operations take no ids; one that does should bring its links."""
    schema = create_ingest().openapi()
    assert not any(
        p["in"] == "path"
        for ops in schema["paths"].values()
        for op in ops.values()
        for p in op.get("parameters", [])
    )


class Thing(BaseModel):
    thing_id: str


def things() -> dict[str, Any]:
    app = FastAPI()

    @app.post("/things", status_code=201, response_model=Thing)
    def create() -> Thing:
        return Thing(thing_id="t")

    @app.get("/things/{thing_id}", response_model=Thing)
    def read(thing_id: str) -> Thing:
        return Thing(thing_id=thing_id)

    return app.openapi()


def test_a_link_is_written_on_each_2xx_of_its_source() -> None:
    schema = things()
    add_links(
        schema,
        [
            Link(
                "POST /things",
                "GET /things/{thing_id}",
                {"thing_id": "$response.body#/thing_id"},
                "Read it back",
                name="ReadThing",
            )
        ],
    )
    link = schema["paths"]["/things"]["post"]["responses"]["201"]["links"]["ReadThing"]
    assert link == {
        "operationId": schema["paths"]["/things/{thing_id}"]["get"]["operationId"],
        "parameters": {"thing_id": "$response.body#/thing_id"},
        "description": "Read it back",
    }


@pytest.mark.parametrize(
    ("target", "parameters", "complaint"),
    [
        ("GET /things/{id}", {"thing_id": "$response.body#/thing_id"}, "no operation"),
        ("GET /things/{thing_id}", {"id": "$response.body#/thing_id"}, "no parameter"),
        ("GET /things/{thing_id}", {"thing_id": "$response.body#/id"}, "has no 'id'"),
        ("GET /things/{thing_id}", {"thing_id": "response.body.id"}, "not a runtime expression"),
    ],
)
def test_a_link_that_does_not_fit_the_document_is_refused(
    target: str, parameters: dict[str, str], complaint: str
) -> None:
    with pytest.raises(LinkError, match=complaint):
        add_links(things(), [Link("POST /things", target, parameters, "Read it back")])
