"""Property-based fuzzing of each service's OpenAPI document (schemathesis): no 5xx, and every
response conforms to the document — operation by operation, then stateful along the documented
links (create → read → act on what was created)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle
from schemathesis.checks import CheckFunction
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.generation.meta import TestPhase
from schemathesis.generation.stateful import run_state_machine_as_test
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput, normalize_name
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.stateful import is_root_allowed, transition

from engage.stack import ServiceProcess, Stack
from services.rewards.domain.templates import TEMPLATES
from tests.integration.conftest import Keys

# A schema-valid event can still be refused: its `occurred_at` window depends on the time it is
# received, which no JSON Schema can express. Everything else schemathesis checks stays on.
CONTEXT_DEPENDENT: list[CheckFunction] = [positive_data_acceptance]
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


# Stateful runs: 150 scenarios of up to 10 steps per service; about 15-20 s each on two cores.
STATEFUL = settings(FUZZ, max_examples=150, stateful_step_count=10, phases=[Phase.generate])
# Where scenarios start: the operations that create (or list) what the links lead from, each
# fuzzed and, as often, with a request it accepts — a random campaign or broadcast is almost
# never valid, and a scenario needs one to follow its links.
NEXT_YEAR = datetime.now(UTC).year + 1
FUZZ_TEMPLATE = {"name": "fuzz", "channel": "im", "locale": "zh-CN"}
STARTS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "scoring": {"PUT /v1/profiles/{name}": [], "GET /v1/profiles": []},
    "rewards": {
        "POST /v1/campaigns": [
            {
                "body": {
                    "template": name,
                    "starts_at": f"{NEXT_YEAR}-01-01T00:00:00+00:00",
                    "ends_at": f"{NEXT_YEAR}-03-01T00:00:00+00:00",
                }
            }
            for name in sorted(TEMPLATES)
        ],
        "GET /v1/grants": [],
    },
    "notify": {
        "PUT /v1/templates/{name}/{channel}/{locale}": [
            {
                "path_parameters": FUZZ_TEMPLATE,
                "body": {
                    "category": "marketing",
                    "text": "{name}，周末双倍积分！",
                    "placeholders": ["name"],
                },
            },
        ],
        "POST /v1/broadcasts": [
            {
                "body": {
                    "name": "fuzz",
                    "template": "fuzz",
                    "category": "marketing",
                    "params": {"name": "亲爱的用户"},
                    "rate_per_s": 20,
                    "segment": {"kind": "list", "user_ids": users},
                },
            }
            for users in (["fz-1"], ["fz-1", "fz-2", "fz-3"])
        ],
        "PUT /v1/users/{user_id}/opt-out": [],
        "GET /v1/users/{user_id}/notifications": [],
    },
}


def follow_links(service: ServiceProcess, name: str, key: str) -> Counter[str]:
    """Scenarios along `service`'s documented links, as `key`: no 5xx, every response matches
    the document. Returns how often each operation answered 2xx after following a link."""
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    schema.config.phases.stateful.inference.algorithms = []  # the documented links only
    machine = schema.as_state_machine()
    # Schemathesis picks where scenarios start by guesswork (a POST, a GET without an id) that
    # misses a create by PUT and prefers approving random ids; start at the creates instead.
    roots: dict[str, Any] = dict.fromkeys(machine.root_rules)
    for label, accepted in STARTS[name].items():
        method, path = label.split(" ", 1)
        op = schema[path][method]
        rule = normalize_name(f"START -> {op.label}")
        fuzzed = op.as_strategy(generation_mode=GenerationMode.POSITIVE, phase=TestPhase.STATEFUL)
        valid = [op.as_strategy(phase=TestPhase.STATEFUL, **request) for request in accepted]
        strategy = st.one_of(fuzzed, *valid) if valid else fuzzed
        roots[rule] = transition(
            name=rule,
            target=Bundle("catch_all"),  # where schemathesis' own rules put their steps
            precondition=is_root_allowed(op.label),
            input=strategy.map(StepInput.initial),
        )
    followed: Counter[str] = Counter()

    class Scenarios(machine):  # type: ignore[valid-type, misc]
        root_rules = frozenset(r for r, f in roots.items() if f is not None)
        _root_labels = frozenset(STARTS[name])

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {key}"}}

        def step(self, input: StepInput) -> StepOutput:
            output: StepOutput = super().step(input)
            if input.transition is not None and output.response.status_code < 300:
                followed[input.case.operation.label] += 1
            return output

        def validate_response(
            self, response: Response, case: Case[Any], additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response,
                excluded_checks=CONTEXT_DEPENDENT,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    for rule, function in roots.items():
        setattr(Scenarios, rule, function)
    run_state_machine_as_test(Scenarios, settings=STATEFUL)
    return followed


def test_scoring_profiles_hold_up_along_their_links(scoring: ServiceProcess, keys: Keys) -> None:
    followed = follow_links(scoring, "scoring", keys.admin)
    assert followed["GET /v1/profiles/{name}"] > 0, followed


def test_rewards_campaigns_hold_up_along_their_links(rewards: ServiceProcess, keys: Keys) -> None:
    followed = follow_links(rewards, "rewards", keys.admin)
    assert followed["GET /v1/campaigns/{campaign_id}"] > 0, followed


def test_notify_templates_and_broadcasts_hold_up_along_their_links(
    notify: ServiceProcess, keys: Keys
) -> None:
    followed = follow_links(notify, "notify", keys.admin)
    assert followed["GET /v1/broadcasts/{broadcast_id}"] > 0, followed
