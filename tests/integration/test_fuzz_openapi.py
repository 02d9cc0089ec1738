"""Property-based fuzzing of each service's OpenAPI document (schemathesis): no 5xx, and every
response conforms to the document."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from engage.stack import ServiceProcess, Stack
from tests.integration.conftest import Keys

# A schema-valid event can still be refused: its `occurred_at` window depends on the time it is
# received, which no JSON Schema can express. Everything else schemathesis checks stays on.
CONTEXT_DEPENDENT = [positive_data_acceptance]
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def operations(service: ServiceProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    results = list(schema.get_all_operations())
    broken = [r for r in results if not isinstance(r, Ok)]
    assert not broken, f"operations schemathesis cannot read: {broken}"
    return [r.ok() for r in results if isinstance(r, Ok)]


@pytest.fixture(scope="module")
def scoring(stack: Stack) -> ServiceProcess:
    return stack.start_service("scoring")


@pytest.fixture(scope="module")
def notify(stack: Stack) -> ServiceProcess:
    env = {"NOTIFY_SCHEMA_NAME": "notify_fuzz", "NOTIFY_CONSUME": "false"}
    return stack.start_service("notify", instance="-fuzz", env=env)


def fuzz(service: ServiceProcess, key: str, mode: GenerationMode) -> list[str]:
    """Every operation, fuzzed as `key`: no 5xx, and every response matches the document."""
    ops = operations(service)
    for op in ops:
        if mode is GenerationMode.NEGATIVE and not (op.path_parameters or op.query or op.body):
            continue  # nothing to make invalid

        @given(case=op.as_strategy(generation_mode=mode))
        @FUZZ
        def check(case: Any) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {key}"}, excluded_checks=CONTEXT_DEPENDENT
            )

        check()
    return [f"{op.method.upper()} {op.path}" for op in ops]


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_ingest_never_answers_5xx_and_matches_its_schema(
    ingest: ServiceProcess, keys: Keys, mode: GenerationMode
) -> None:
    fuzzed = fuzz(ingest, keys.admin, mode)
    assert {"POST /v1/events", "POST /v1/events:import"} <= set(fuzzed)


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_scoring_never_answers_5xx_and_matches_its_schema(
    scoring: ServiceProcess, keys: Keys, mode: GenerationMode
) -> None:
    fuzzed = fuzz(scoring, keys.admin, mode)
    assert "GET /v1/leaderboards/{month}/{province}" in fuzzed


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_rewards_never_answers_5xx_and_matches_its_schema(
    rewards: ServiceProcess, keys: Keys, mode: GenerationMode
) -> None:
    fuzzed = fuzz(rewards, keys.admin, mode)
    assert {"POST /v1/campaigns", "PUT /v1/campaigns/{campaign_id}/draft"} <= set(fuzzed)


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_notify_never_answers_5xx_and_matches_its_schema(
    notify: ServiceProcess, keys: Keys, mode: GenerationMode
) -> None:
    fuzzed = fuzz(notify, keys.admin, mode)
    assert "PUT /v1/templates/{name}/{channel}/{locale}" in fuzzed


def test_anonymous_fuzzed_calls_are_refused_with_problem_json(
    ingest: ServiceProcess, scoring: ServiceProcess, rewards: ServiceProcess, notify: ServiceProcess
) -> None:
    services = (ingest, scoring, rewards, notify)
    for op in [op for service in services for op in operations(service)]:
        if not op.path.startswith("/v1/"):
            continue

        @given(case=op.as_strategy())
        @settings(FUZZ, max_examples=20)
        def check(case: Any) -> None:
            response = case.call()
            assert response.status_code == 401
            assert response.headers["content-type"][0] == "application/problem+json"

        check()
