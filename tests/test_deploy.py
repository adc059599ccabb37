"""The docker deployment (Dockerfile, docker-compose.yml, docker/workspace.yaml) read as files.

No Docker engine is needed: these tests parse the files and check that they agree with each
other and with the platform's settings (``imdb_assets.settings.ENVIRONMENT``), so that the
settings and the deployment cannot drift apart.
"""

from __future__ import annotations

import importlib
import posixpath
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from dagster_postgres import DagsterPostgresStorage

from imdb_assets import cli, settings
from imdb_assets.settings import DEFAULT_BASE_URL

# The API's variables, which the API's service needs; the Dagster services need the others.
API_ENVIRONMENT = {
    settings.variable_name(field)
    for field in settings.Settings.model_fields
    if field.startswith("api_") or field == "dagster_url"
}
ENVIRONMENT = set(settings.ENVIRONMENT) - API_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKER_WORKSPACE = ROOT / "docker" / "workspace.yaml"
DAGSTER_YAML = ROOT / "dagster.yaml"

CODE_SERVER = "imdb_code"
DAGSTER_SERVICES = (CODE_SERVER, "webserver", "webserver_readonly", "daemon")
API = "api"
DAGSTER_HOME = "/opt/dagster/dagster_home"
CONTAINER_WORKSPACE = f"{DAGSTER_HOME}/workspace.yaml"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, $NAME (compose interpolation syntax)
INTERPOLATION = re.compile(r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
BARE_VARIABLE = re.compile(r"(?<!\$)\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def workspace() -> dict:
    return yaml.safe_load(DOCKER_WORKSPACE.read_text())


@pytest.fixture(scope="module")
def grpc_entry(workspace: dict) -> dict:
    entries = workspace["load_from"]
    assert len(entries) == 1, entries
    assert set(entries[0]) == {"grpc_server"}, entries[0]
    return entries[0]["grpc_server"]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE.read_text())


def command_args(service: dict) -> list[str]:
    """The service's command (or entrypoint + command) as an argv list."""
    argv: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if value is None:
            continue
        argv += shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
    return argv


def option(argv: list[str], *names: str) -> str:
    """The value of a CLI option (``-p 4000``, ``--port 4000`` or ``--port=4000``); exactly once."""
    values = []
    for i, arg in enumerate(argv):
        if arg in names:
            values.append(argv[i + 1])
        else:
            for name in names:
                if name.startswith("--") and arg.startswith(name + "="):
                    values.append(arg.split("=", 1)[1])
    assert len(values) == 1, f"expected exactly one {names} in {argv}"
    return values[0]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def with_defaults(value: str) -> str:
    """A compose value with every ``${NAME:-default}`` replaced by its default (an empty shell)."""

    def substitute(match: re.Match[str]) -> str:
        op = match["op"] or ""
        return match["arg"] if op in (":-", "-") else ""

    return INTERPOLATION.sub(substitute, value)


def required_variable(value: str) -> str:
    """The variable a compose value is made of when it is exactly ``${NAME:?message}``: compose refuses to start
    without it, so it has no default."""
    match = INTERPOLATION.fullmatch(value)
    assert match and match["op"] == ":?", f"{value!r} is not a required variable"
    return match["braced"]


def named_volume_mounts(service: dict) -> dict[str, str]:
    """Container path -> named volume (short syntax ``name:/path[:mode]`` or long syntax)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            if volume.get("type", "volume") != "volume":
                continue
            source, target = volume.get("source"), volume["target"]
        if source and not source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


def bind_mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path (relative to the compose file) for bind mounts."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    return mounts


class Dockerfile:
    """Just enough of a Dockerfile reader: instructions, ENV values and where COPY puts files."""

    def __init__(self, instructions: list[tuple[str, str]]):
        self.instructions = instructions
        self.env: dict[str, str] = {}
        self.workdir = "/"
        # (source relative to the build context, absolute destination, destination is a folder)
        self.copies: list[tuple[str, str, bool]] = []
        for keyword, args in instructions:
            if keyword == "ENV":
                tokens = shlex.split(args)
                if "=" in tokens[0]:
                    pairs = [token.split("=", 1) for token in tokens]
                else:
                    pairs = [(tokens[0], " ".join(tokens[1:]))]
                for key, value in pairs:
                    self.env[key] = self.expand(value)
            elif keyword == "WORKDIR":
                self.workdir = posixpath.join(self.workdir, self.expand(args.strip()))
            elif keyword in ("COPY", "ADD"):
                tokens = shlex.split(args)
                if any(token.startswith("--from") for token in tokens):
                    continue
                paths = [token for token in tokens if not token.startswith("--")]
                *sources, dest = paths
                dest = self.expand(dest)
                is_dir = dest.endswith("/") or len(sources) > 1
                dest = posixpath.normpath(posixpath.join(self.workdir, dest))
                for source in sources:
                    self.copies.append((posixpath.normpath(source), dest, is_dir))

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        logical, current = [], ""
        for line in text.splitlines():
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.lstrip().startswith("#"):  # comment inside a continued instruction
                continue
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
            else:
                logical.append(current + line)
                current = ""
        if current:
            logical.append(current)
        instructions = []
        for line in logical:
            keyword, _, args = line.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
        return cls(instructions)

    def expand(self, value: str) -> str:
        value = re.sub(r"\$\{(\w+)\}", lambda m: self.env.get(m[1], m[0]), value)
        return BARE_VARIABLE.sub(lambda m: self.env.get(m["name"], m[0]), value)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def container_paths(self, repo_path: str) -> set[str]:
        """Where a file of the repository (path relative to its root) ends up in the image."""
        repo_path = posixpath.normpath(repo_path)
        found = set()
        for source, dest, is_dir in self.copies:
            if source == repo_path:
                found.add(posixpath.join(dest, posixpath.basename(source)) if is_dir else dest)
            elif source == ".":
                found.add(posixpath.join(dest, repo_path))
            elif repo_path.startswith(source + "/"):
                found.add(posixpath.join(dest, repo_path[len(source) + 1 :]))
        return found


def files_at(path: str, service: dict, dockerfile: Dockerfile) -> set[Path]:
    """Which repository files a container path of a compose service is (via COPY or bind mount)."""
    found = set()
    for target, host in bind_mounts(service).items():
        if path == target:
            found.add(host)
    # Candidates: the YAML files at the top level and under docker/ (never data/ or .venv/).
    for candidate in [*ROOT.glob("*.y*ml"), *ROOT.glob("docker/**/*.y*ml")]:
        if path in dockerfile.container_paths(candidate.relative_to(ROOT).as_posix()):
            found.add(candidate.resolve())
    return found


# --------------------------------------------------------------------------- compose: services


def test_services_exist(services: dict) -> None:
    assert {"postgres", CODE_SERVER, "webserver", "webserver_readonly", "daemon", API} <= set(services)
    # The official image's tag, which a variable may change (the tests here run a stand-in of Debian's 15).
    assert with_defaults(services["postgres"]["image"]) == "postgres:16"


def test_dagster_services_share_the_image_built_from_the_dockerfile(services: dict) -> None:
    images = set()
    for name in DAGSTER_SERVICES:
        service = services[name]
        build = service["build"]
        if isinstance(build, str):
            build = {"context": build}
        assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT, name
        assert (ROOT / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name
        images.add(service["image"])
    assert images == {"imdb-assets:latest"}


def test_code_server_serves_imdb_assets_on_the_workspace_port(services: dict, grpc_entry: dict) -> None:
    argv = command_args(services[CODE_SERVER])
    assert argv[:3] == ["dagster", "code-server", "start"], argv
    assert option(argv, "-m", "--module-name") == "imdb_assets.definitions"
    assert option(argv, "-h", "--host") == "0.0.0.0"
    assert int(option(argv, "-p", "--port")) == 4000
    assert grpc_entry["port"] == 4000
    assert grpc_entry["host"] == CODE_SERVER
    assert grpc_entry["location_name"] == "imdb_assets"


def test_code_server_healthcheck_probes_its_port(services: dict) -> None:
    test = services[CODE_SERVER]["healthcheck"]["test"]
    argv = shlex.split(test[1]) if test[0] == "CMD-SHELL" else test[1:]
    assert argv[:3] == ["dagster", "api", "grpc-health-check"], argv
    assert int(option(argv, "-p", "--port")) == int(option(command_args(services[CODE_SERVER]), "-p"))


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("webserver", ["dagster-webserver"]),
        ("webserver_readonly", ["dagster-webserver", "--read-only"]),
        ("daemon", ["dagster-daemon", "run"]),
    ],
)
def test_webserver_and_daemon_load_the_docker_workspace(
    services: dict, dockerfile: Dockerfile, name: str, prefix: list[str]
) -> None:
    service = services[name]
    argv = command_args(service)
    assert argv[: len(prefix)] == prefix, argv
    path = option(argv, "-w", "--workspace")
    path = posixpath.join(service.get("working_dir", dockerfile.workdir), path)
    assert path == CONTAINER_WORKSPACE
    # The file at that path in the container is docker/workspace.yaml, not the local-dev one.
    assert files_at(path, service, dockerfile) == {DOCKER_WORKSPACE.resolve()}


def test_only_the_read_only_webserver_is_published_beyond_the_host(services: dict) -> None:
    """Dagster OSS has no authentication and its GraphQL endpoint launches runs: the operators' webserver listens
    on the host's loopback only, the viewers' one is --read-only."""
    for name, published in (("webserver", "127.0.0.1:3000:3000"), ("webserver_readonly", "3001:3000")):
        argv = command_args(services[name])
        assert option(argv, "-h", "--host") == "0.0.0.0"
        assert option(argv, "-p", "--port") == "3000"
        assert [with_defaults(str(port)) for port in services[name]["ports"]] == [published], name
    assert "--read-only" not in command_args(services["webserver"])
    assert "--read-only" in command_args(services["webserver_readonly"])


def test_the_api_reaches_dagster_inside_the_network_and_the_database(services: dict) -> None:
    api = services[API]
    argv = command_args(api)
    assert argv[:3] == ["python", "-m", "imdb_api"]
    assert option(argv, "--host") == "0.0.0.0" and option(argv, "--port") == "8000"
    assert [with_defaults(str(port)) for port in api["ports"]] == ["8000:8000"]
    env = {key: with_defaults(value) for key, value in environment(api).items()}
    assert set(API_ENVIRONMENT) <= set(env)
    assert env["IMDB_DAGSTER_URL"] == "http://webserver:3000"
    assert environment(api)["DATABASE_URL"] == environment(services["webserver"])["DATABASE_URL"]
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert named_volume_mounts(api)[env["IMDB_DATA_DIR"]] == "imdb-data"


def test_dagster_services_wait_for_healthy_postgres(services: dict) -> None:
    for name in DAGSTER_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
    for name in ("webserver", "webserver_readonly", "daemon"):
        assert CODE_SERVER in services[name]["depends_on"], name


def test_postgres_healthcheck_and_volume(compose: dict, services: dict) -> None:
    postgres = services["postgres"]
    env = environment(postgres)
    test = postgres["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    argv = shlex.split(test[1])
    assert argv[0] == "pg_isready"
    assert option(argv, "-U", "--username") == env["POSTGRES_USER"]
    assert option(argv, "-d", "--dbname") == env["POSTGRES_DB"]
    volume = named_volume_mounts(postgres)["/var/lib/postgresql/data"]
    assert volume in compose["volumes"]


# --------------------------------------------------------------------------- the environment contract


@pytest.mark.parametrize("name", DAGSTER_SERVICES)
def test_every_contract_variable_is_set(services: dict, name: str) -> None:
    env = {key: with_defaults(value) for key, value in environment(services[name]).items()}
    assert set(ENVIRONMENT) <= set(env), f"{name} misses {set(ENVIRONMENT) - set(env)}"
    assert env["DATABASE_URL"] == "postgresql://imdb:@postgres:5432/imdb"  # the password has no default
    assert env["IMDB_BASE_URL"] == DEFAULT_BASE_URL == "https://datasets.imdbws.com/"
    assert env["IMDB_DATA_DIR"] == "/data"
    assert float(env["IMDB_MAX_REJECT_FRACTION"]) == 0.001


def test_overridable_variables_keep_their_own_name(services: dict) -> None:
    for name in DAGSTER_SERVICES:
        env = environment(services[name])
        for key in ("IMDB_BASE_URL", "IMDB_MAX_REJECT_FRACTION"):
            match = INTERPOLATION.fullmatch(env[key])
            assert match and match["braced"] == key and match["op"] == ":-", (name, key, env[key])


def test_every_platform_variable_in_the_deployment_is_in_the_contract(services: dict, dockerfile: Dockerfile) -> None:
    names = set(dockerfile.env)
    for service in services.values():
        names |= set(environment(service))
    text = COMPOSE_FILE.read_text()
    names |= {match["braced"] for match in INTERPOLATION.finditer(text)}
    names |= {match["name"] for match in BARE_VARIABLE.finditer(text)}
    platform = {name for name in names if name.startswith("IMDB_") or name == "DATABASE_URL"}
    contract = set(ENVIRONMENT) | set(API_ENVIRONMENT)
    assert platform <= contract, f"not in ENVIRONMENT or API_ENVIRONMENT: {platform - contract}"
    assert platform == contract


def test_database_url_points_at_the_postgres_service(services: dict) -> None:
    postgres_env = environment(services["postgres"])
    password_variable = required_variable(postgres_env["POSTGRES_PASSWORD"])
    for name in (*DAGSTER_SERVICES, API):
        raw_url = environment(services[name])["DATABASE_URL"]
        url = urlsplit(with_defaults(raw_url))
        assert url.scheme in ("postgresql", "postgres")
        assert url.hostname == "postgres" and url.hostname in services
        assert url.port == 5432
        assert url.username == postgres_env["POSTGRES_USER"] == "imdb"
        # The password is the server's, from the same required variable, and nothing else in the URL varies.
        assert url.password == ""
        assert [match[0] for match in INTERPOLATION.finditer(raw_url)] == [postgres_env["POSTGRES_PASSWORD"]]
        assert password_variable == "POSTGRES_PASSWORD"
        assert url.path.lstrip("/") == postgres_env["POSTGRES_DB"] == "imdb"


def test_postgres_is_published_on_the_host_loopback_only(services: dict) -> None:
    """psql and pg_dump from the host reach it; other machines do not."""
    ports = [with_defaults(str(port)) for port in services["postgres"]["ports"]]
    assert ports == ["127.0.0.1:5432:5432"]


def test_no_password_has_a_fixed_default(services: dict) -> None:
    """A password comes from a required variable, or is generated when left empty (the API's role); a URL holds
    no password of its own."""
    for name, service in services.items():
        for key, value in environment(service).items():
            if value is None:
                continue
            if "PASSWORD" in key:
                match = INTERPOLATION.fullmatch(value)
                assert match and match["braced"] == key, (name, key, value)
                assert match["op"] == ":?" or (match["op"] == ":-" and match["arg"] == ""), (name, key, value)
            elif key.endswith("DATABASE_URL"):
                assert not urlsplit(with_defaults(value)).password, (name, key, value)


def test_code_server_keeps_the_data_dir_on_a_named_volume(compose: dict, services: dict) -> None:
    data_dir = with_defaults(environment(services[CODE_SERVER])["IMDB_DATA_DIR"])
    volume = named_volume_mounts(services[CODE_SERVER])[data_dir]
    assert volume == "imdb-data"
    assert volume in compose["volumes"]


# --------------------------------------------------------------------------- Dockerfile and dagster.yaml


def test_dockerfile_builds_the_uv_environment(dockerfile: Dockerfile) -> None:
    assert dockerfile.args("FROM") == ["python:3.11-slim"]
    assert any(re.search(r"\bpip install\b.*\buv\b", run) for run in dockerfile.args("RUN"))
    # The lock file and pyproject go in before the project itself; the final sync is frozen, no dev.
    copies = [source for source, _, _ in dockerfile.copies]
    assert copies.index("pyproject.toml") < copies.index(".")
    assert copies.index("uv.lock") < copies.index(".")
    syncs = [run for run in dockerfile.args("RUN") if "uv sync" in run]
    assert syncs and all("--frozen" in run and "--no-dev" in run for run in syncs)
    venv = dockerfile.env.get("UV_PROJECT_ENVIRONMENT", posixpath.join(dockerfile.workdir, ".venv"))
    assert dockerfile.env["PATH"].split(":")[0] == f"{venv}/bin"
    assert dockerfile.env["IMDB_DATA_DIR"] == "/data"


def test_the_image_prepares_the_dbt_project_as_the_definitions_require(dockerfile: Dockerfile) -> None:
    """`imdb prepare`, after the project is copied in: the manifest, and the record of what it was parsed from
    without which the definitions refuse to load."""
    runs = dockerfile.args("RUN")
    prepare = next(i for i, run in enumerate(runs) if run.endswith("/imdb prepare"))
    assert prepare > max(i for i, run in enumerate(runs) if "uv sync" in run)
    assert (ROOT / cli.PROJECT_MODULE).is_file()
    assert "dbt_project/target" in (ROOT / ".dockerignore").read_text()  # parsed in the image, never copied in


def test_dockerfile_puts_dagster_yaml_in_dagster_home(dockerfile: Dockerfile) -> None:
    assert dockerfile.env["DAGSTER_HOME"] == DAGSTER_HOME
    assert f"{DAGSTER_HOME}/dagster.yaml" in dockerfile.container_paths("dagster.yaml")
    assert CONTAINER_WORKSPACE in dockerfile.container_paths("docker/workspace.yaml")


def env_keys(node: object) -> set[str]:
    """Names in ``{env: NAME}`` nodes of a Dagster config (how dagster.yaml reads env vars)."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, str):
                found.add(value)
            else:
                found |= env_keys(value)
    elif isinstance(node, list):
        for item in node:
            found |= env_keys(item)
    return found


def test_dagster_storage_is_the_platform_database_in_every_service(services: dict, dockerfile: Dockerfile) -> None:
    config = yaml.safe_load(DAGSTER_YAML.read_text())
    storage = config["storage"]["custom"]
    storage_class = getattr(importlib.import_module(storage["module"]), storage["class"])
    assert issubclass(storage_class, DagsterPostgresStorage) and storage["config"] == {"database": "dagster"}
    # The storage follows the platform's settings, not a variable of its own: every service running Dagster must
    # give it the platform's database.
    assert not env_keys(config)
    for name in DAGSTER_SERVICES:
        assert "DATABASE_URL" in set(environment(services[name])) | set(dockerfile.env), name
