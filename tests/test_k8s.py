"""The Kubernetes deployment (deploy/) read as files: no cluster, helm or kind runs on these machines.

Every manifest is checked against Kubernetes' own schemas (kubernetes-validate, offline); the Helm values against
the keys of Dagster's chart at the version of the Dagster in uv.lock; the instance the chart writes from those values
is loaded by Dagster with dagster-k8s; and all of them against the platform's settings and each other.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from dagster import in_process_executor
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.test_utils import instance_for_test
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from fastapi.routing import APIRoute

from imdb_api.routers.health import router as health_router
from imdb_assets import settings, storage
from imdb_assets.defs import jobs
from imdb_assets.defs.instance import ImdbPostgresStorage

ROOT = Path(__file__).resolve().parents[1]
VALUES_FILE = ROOT / "deploy" / "helm" / "dagster-values.yaml"
MANIFESTS = ROOT / "deploy" / "k8s"
SECRETS_EXAMPLE = MANIFESTS / "secrets.example.yaml"
DAGSTER_YAML = ROOT / "dagster.yaml"

# The release and namespace the values and manifests are written for (deploy/helm/dagster-values.yaml).
RELEASE = NAMESPACE = "imdb"
# The chart's `dagster.fullname`: the release name, then the chart's name unless the release name holds it.
CHART_FULLNAME = f"{RELEASE}-dagster"
DAGSTER_HOME = "/opt/dagster/dagster_home"
# The Kubernetes releases whose schemas the manifests are checked against: an older one still in wide use, and the
# newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())

ANY = ...
# The version of Dagster's chart, the same as the Dagster in uv.lock.
CHART_VERSION = "1.13.27"
# The keys of the values of Dagster's chart (at CHART_VERSION) that deploy/helm/dagster-values.yaml may
# use, read from the models that generate the chart's values.schema.json (helm/dagster/schema/schema/charts/ in
# dagster-io/dagster; the chart cannot be downloaded here): a dict is the keys allowed beneath, a one-item list a
# list of such items, ANY a value the chart takes as it is (an environment map, a Kubernetes volume).
CHART_KEYS: dict[str, Any] = {
    "global": dict.fromkeys(
        ["postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"], ANY
    ),
    "generatePostgresqlPasswordSecret": ANY,
    "postgresql": {
        **dict.fromkeys(
            [
                "enabled",
                "image",
                "postgresqlScheme",
                "postgresqlHost",
                "postgresqlUsername",
                "postgresqlPassword",
                "postgresqlDatabase",
                "postgresqlParams",
            ],
            ANY,
        ),
        "service": {"port": ANY},
    },
    "dagsterWebserver": dict.fromkeys(
        [
            "replicaCount",
            "image",
            "nameOverride",
            "pathPrefix",
            "service",
            "workspace",
            "env",
            "envConfigMaps",
            "envSecrets",
            "labels",
            "resources",
            "enableReadOnly",
            "dbStatementTimeout",
            "logLevel",
            "volumeMounts",
            "volumes",
        ],
        ANY,
    ),
    "dagster-user-deployments": {
        "enabled": ANY,
        "enableSubchart": ANY,
        "imagePullSecrets": ANY,
        "deployments": [
            {
                **dict.fromkeys(
                    [
                        "name",
                        "port",
                        "dagsterApiGrpcArgs",
                        "codeServerArgs",
                        "env",
                        "envConfigMaps",
                        "envSecrets",
                        "resources",
                        "labels",
                        "annotations",
                        "volumeMounts",
                        "volumes",
                        "livenessProbe",
                        "readinessProbe",
                        "startupProbe",
                    ],
                    ANY,
                ),
                "image": dict.fromkeys(["repository", "tag", "pullPolicy"], ANY),
                "includeConfigInLaunchedRuns": {"enabled": ANY},
            }
        ],
    },
    "runLauncher": {
        "type": ANY,
        "config": {
            "k8sRunLauncher": dict.fromkeys(
                [
                    "image",
                    "imagePullPolicy",
                    "jobNamespace",
                    "loadInclusterConfig",
                    "kubeconfigFile",
                    "envConfigMaps",
                    "envSecrets",
                    "envVars",
                    "volumeMounts",
                    "volumes",
                    "labels",
                    "failPodOnRunFailure",
                    "resources",
                    "runK8sConfig",
                ],
                ANY,
            ),
        },
    },
    "dagsterDaemon": {
        "enabled": ANY,
        "runCoordinator": {
            "enabled": ANY,
            "type": ANY,
            "config": {
                "queuedRunCoordinator": {
                    "maxConcurrentRuns": ANY,
                    "tagConcurrencyLimits": [dict.fromkeys(["key", "value", "limit"], ANY)],
                    "dequeueIntervalSeconds": ANY,
                }
            },
        },
        "runRetries": dict.fromkeys(["enabled", "maxRetries"], ANY),
        "runMonitoring": ANY,
    },
    "telemetry": {"enabled": ANY},
}


def unknown_keys(values: Any, shape: Any, path: str = "") -> list[str]:
    """The key paths of `values` that `shape` (a part of CHART_KEYS) does not have."""
    if shape is ANY:
        return []
    if isinstance(shape, list):
        return [key for i, item in enumerate(values) for key in unknown_keys(item, shape[0], f"{path}[{i}]")]
    assert isinstance(values, dict), f"{path} should be a mapping"
    found = []
    for key, value in values.items():
        if key in shape:
            found += unknown_keys(value, shape[key], f"{path}.{key}")
        else:
            found.append(f"{path}.{key}")
    return found


def load_documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def manifests() -> list[tuple[str, dict]]:
    return [
        (f"{path.name}: {document['kind']} {document['metadata']['name']}", document)
        for path in sorted(MANIFESTS.glob("*.yaml"))
        for document in load_documents(path)
    ]


def find(documents: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES_FILE.read_text())


@pytest.fixture(scope="module")
def code_location(values: dict) -> dict:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["stringData"] for d in load_documents(SECRETS_EXAMPLE) if d["kind"] == "Secret"}


@pytest.fixture(scope="module")
def api_container() -> dict:
    deployment = find(load_documents(MANIFESTS / "api.yaml"), "Deployment", "imdb-api")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def chart_instance(values: dict) -> dict:
    """The instance (dagster.yaml) the chart's templates/configmap-instance.yaml writes from these values, for the
    sections they set: storage (helpers/instance/_postgresql.tpl), run launcher (_run-launcher.tpl), run queue
    (_run-coordinator.tpl), retries and telemetry."""
    postgresql = values["postgresql"]
    storage_config = {
        "postgres_db": {
            "username": postgresql["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": postgresql["postgresqlHost"],
            "db_name": postgresql["postgresqlDatabase"],
            "port": postgresql["service"]["port"],
            "params": postgresql.get("postgresqlParams", {}),
        }
    }
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    return {
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": storage_config,
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": storage_config,
        },
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": storage_config,
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "load_incluster_config": launcher.get("loadInclusterConfig", True),
                "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
                "image_pull_policy": launcher["imagePullPolicy"],
                "service_account_name": CHART_FULLNAME,
                "dagster_home": DAGSTER_HOME,
                "instance_config_map": f"{CHART_FULLNAME}-instance",
                "postgres_password_secret": values["global"]["postgresqlSecretName"],
            },
        },
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": queued["maxConcurrentRuns"],
                "tag_concurrency_limits": queued["tagConcurrencyLimits"],
            },
        },
        "run_retries": {"enabled": values["dagsterDaemon"]["runRetries"]["enabled"]},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


# --------------------------------------------------------------------------- Kubernetes' schemas


@pytest.mark.parametrize(("name", "document"), manifests(), ids=[name for name, _ in manifests()])
def test_every_manifest_validates_against_kubernetes_schemas(name: str, document: dict) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_manifests_are_the_expected_ones() -> None:
    kinds = {name.split(": ", 1)[1] for name, _ in manifests()}
    assert kinds == {
        "Secret imdb-database",
        "Secret imdb-dagster-postgresql",
        "Secret imdb-api-database",
        "Secret imdb-object-storage",
        "Deployment imdb-api",
        "Service imdb-api",
        "NetworkPolicy imdb-dagster-webserver",
    }


def test_the_secrets_example_holds_placeholders_only(secrets: dict[str, dict[str, str]]) -> None:
    for name, data in secrets.items():
        for key, value in data.items():
            assert "CHANGE-ME" in value, (name, key)


# --------------------------------------------------------------------------- the chart's values


def test_the_values_use_only_keys_of_the_chart(values: dict) -> None:
    assert unknown_keys(values, CHART_KEYS) == []


def test_the_values_are_for_the_chart_of_the_locked_dagster() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (dagster,) = [package["version"] for package in lock["package"] if package["name"] == "dagster"]
    assert dagster == CHART_VERSION
    text = VALUES_FILE.read_text()
    assert f"dagster/dagster {dagster}" in text and f"--version {dagster}" in text


def test_the_code_location_is_the_project_image_serving_its_definitions(values: dict, code_location: dict) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert values["dagster-user-deployments"]["enabled"] is True
    assert code_location["codeServerArgs"] == ["-m", pyproject["tool"]["dagster"]["module_name"]]
    assert code_location["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert values["runLauncher"]["type"] == "K8sRunLauncher"


def test_the_code_location_environment_is_valid_settings(
    code_location: dict, secrets: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the code server, its runs and their steps are given (its env, then its Secrets) are settings of the
    platform, with values it accepts; each step is a Kubernetes Job."""
    environment = dict(code_location["env"])
    for secret in code_location["envSecrets"]:
        environment |= secrets[secret["name"]]
    assert set(environment) <= set(settings.ENVIRONMENT) | set(storage.AWS_VARIABLES)
    for name in settings.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    loaded = settings.load()
    assert loaded.step_executor == "k8s"
    assert loaded.database_url == secrets["imdb-database"]["DATABASE_URL"]


def test_the_files_are_in_a_bucket_that_every_pod_reaches_without_a_volume(
    code_location: dict, secrets: dict[str, dict[str, str]]
) -> None:
    """Runs and steps share no disk: the files are in object storage, its credentials from a Secret."""
    assert "volumes" not in code_location and "volumeMounts" not in code_location
    bucket = storage.location(code_location["env"]["IMDB_DATA_DIR"])
    assert not storage.is_local(bucket) and bucket.protocol == "s3"
    assert {"name": "imdb-object-storage"} in code_location["envSecrets"]
    assert set(secrets["imdb-object-storage"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert "AWS_REGION" in code_location["env"]


def test_dagster_storage_is_the_platforms_server_and_database(values: dict, secrets: dict[str, dict[str, str]]) -> None:
    """The chart's storage settings name the server, port and role of DATABASE_URL, and the database
    ImdbPostgresStorage uses outside Kubernetes; its password comes from a Secret, not the values."""
    postgresql = values["postgresql"]
    url = urlsplit(secrets["imdb-database"]["DATABASE_URL"])
    assert postgresql["enabled"] is False
    assert (postgresql["postgresqlHost"], postgresql["service"]["port"], postgresql["postgresqlUsername"]) == (
        url.hostname,
        url.port,
        url.username,
    )
    assert postgresql["postgresqlDatabase"] == ImdbPostgresStorage.config_type()["database"].default_value
    assert "postgresqlPassword" not in postgresql
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "postgresql-password" in secrets[values["global"]["postgresqlSecretName"]]


def test_the_run_queue_is_the_repositorys(values: dict) -> None:
    local = yaml.safe_load(DAGSTER_YAML.read_text())
    chart = chart_instance(values)
    assert chart["run_coordinator"]["class"] == local["run_coordinator"]["class"]
    assert chart["run_coordinator"]["config"] == local["run_coordinator"]["config"]
    assert chart["run_retries"]["enabled"] == local["run_retries"]["enabled"]
    assert chart["telemetry"] == local["telemetry"]


# --------------------------------------------------------------------------- the instance, with dagster-k8s


def test_the_instance_the_chart_writes_loads_with_dagster_k8s(
    values: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run launcher, queue and retries are built by Dagster from the instance the chart writes; the storage
    sections are checked against dagster-postgres' config schemas (opening them needs the server)."""
    instance_config = chart_instance(values)
    # The whole file against this Dagster's instance schema, as `dagster-webserver` would read it.
    chart_home, test_home = tmp_path / "chart", tmp_path / "test"
    chart_home.mkdir()
    test_home.mkdir()
    (chart_home / "dagster.yaml").write_text(yaml.safe_dump(instance_config))
    dagster_instance_config(str(chart_home))
    for section in ("run_storage", "event_log_storage", "schedule_storage"):
        module, class_name, config = (instance_config[section][key] for key in ("module", "class", "config"))
        result = validate_config(getattr(importlib.import_module(module), class_name).config_type(), config)
        assert result.success, (section, [error.message for error in result.errors or []])
    # Building the launcher loads the pod's in-cluster credentials, which only a cluster has.
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    overrides = {key: instance_config[key] for key in ("run_launcher", "run_coordinator", "run_retries", "telemetry")}
    with instance_for_test(overrides=overrides, temp_dir=str(test_home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.job_namespace == NAMESPACE
        assert launcher.instance_config_map == f"{CHART_FULLNAME}-instance"
        assert launcher.postgres_password_secret == values["global"]["postgresqlSecretName"]
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_retries_enabled


def test_the_step_executor_follows_its_setting() -> None:
    assert jobs.step_executor("k8s") is k8s_job_executor
    assert jobs.step_executor("in_process") is in_process_executor


def test_the_code_location_loads_with_the_k8s_executor() -> None:
    """The whole code location, as the code server loads it with the values' IMDB_STEP_EXECUTOR; the database URL
    is never opened to load it."""
    environment = {**os.environ, "IMDB_STEP_EXECUTOR": "k8s", "DATABASE_URL": "postgresql://imdb@127.0.0.1:1/imdb"}
    probe = "from imdb_assets.definitions import defs; print(defs.resolve_job_def('imdb_refresh').executor_def.name)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert loaded.stdout.split()[-1] == k8s_job_executor.name


# --------------------------------------------------------------------------- the API


def test_the_api_serves_on_its_container_port(api_container: dict) -> None:
    command = api_container["command"]
    assert command[:3] == ["python", "-m", "imdb_api"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    (port,) = api_container["ports"]
    assert int(command[command.index("--port") + 1]) == port["containerPort"] == 8000


def test_the_api_probes_its_health_routes(api_container: dict) -> None:
    routes = {route.path for route in health_router.routes if isinstance(route, APIRoute)}
    (port,) = api_container["ports"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert api_container[probe]["httpGet"] == {"path": path, "port": port["name"]}
        assert path in routes


def test_the_api_reads_its_database_from_secrets(api_container: dict, secrets: dict[str, dict[str, str]]) -> None:
    env = {item["name"]: item for item in api_container["env"]}
    assert set(env) <= set(settings.ENVIRONMENT)
    for name in ("DATABASE_URL", "IMDB_API_DATABASE_PASSWORD", "IMDB_API_DATABASE_URL"):
        reference = env[name]["valueFrom"]["secretKeyRef"]
        assert reference["key"] == name
        assert reference["name"] in secrets
        # The one key the API cannot start without is required; the API's role is given one way or the other.
        assert reference.get("optional", False) is (name != "DATABASE_URL")
        if not reference.get("optional"):
            assert name in secrets[reference["name"]]
    assert any(name in secrets["imdb-api-database"] for name in ("IMDB_API_DATABASE_PASSWORD", "IMDB_API_DATABASE_URL"))


def test_the_api_reaches_the_operators_webserver_of_the_release(api_container: dict, values: dict) -> None:
    env = {item["name"]: item.get("value") for item in api_container["env"]}
    webserver = f"{RELEASE}-{values['dagsterWebserver']['nameOverride']}"
    assert env["IMDB_DAGSTER_URL"] == f"http://{webserver}:80"


def test_the_api_runs_the_code_locations_image(api_container: dict, code_location: dict) -> None:
    image = code_location["image"]
    assert api_container["image"] == f"{image['repository']}:{image['tag']}"


def test_the_api_service_selects_its_pods() -> None:
    documents = load_documents(MANIFESTS / "api.yaml")
    deployment, service = find(documents, "Deployment", "imdb-api"), find(documents, "Service", "imdb-api")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_only_the_api_may_reach_the_operators_webserver(values: dict) -> None:
    policy = find(load_documents(MANIFESTS / "network-policy.yaml"), "NetworkPolicy", "imdb-dagster-webserver")
    webserver = policy["spec"]["podSelector"]["matchLabels"]
    # The labels of the chart's webserver pods: its name, the release, the component (not the read-only one's).
    assert webserver == {"app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": RELEASE} | {
        "component": values["dagsterWebserver"]["nameOverride"]
    }
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    api_labels = find(load_documents(MANIFESTS / "api.yaml"), "Deployment", "imdb-api")["spec"]["template"]["metadata"]
    assert source["podSelector"]["matchLabels"].items() <= api_labels["labels"].items()
