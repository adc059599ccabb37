"""The docker deployment built and started here, with podman: the image built from the repository's Dockerfile, every
service of docker-compose.yml up, a refresh from a mirror this test serves over HTTP, the marts queryable, the API
answering with a key and refusing a request without one, the read-only UI refusing a launch.

These machines have no image registry: the two base images are local stand-ins built from Debian's packages
(docker/podman/base-images.sh), under the names the files use, and podman's settings for these machines are in
docker/podman/containers.conf. podman, its images and containers live in this test's temporary folder and are
removed at its end. The slow test of the suite: it runs alone on one worker while the others run the rest.
`.ci/run` installs what it needs; under CI=true a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest

from imdb_dev.generator import generate
from tests.mirror_server import MirrorServer

pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[1]
PODMAN_DIR = ROOT / "docker" / "podman"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # the machine's CAs, its HTTPS proxy's among them
# The stand-in for postgres:16 is Debian's PostgreSQL 15 (bookworm's): run as what it is.
POSTGRES_VERSION = "15"
MIRROR_ROWS = 2000
T = TypeVar("T")


def podman_compose() -> str | None:
    beside = Path(sys.executable).parent / "podman-compose"  # the dev group's, in this venv
    return str(beside) if beside.exists() else shutil.which("podman-compose")


def missing_tools() -> list[str]:
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if podman_compose() is None:
        missing.append("podman-compose")
    return missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 2.0) -> T:
    """``probe()``'s first truthy answer; exceptions count as not yet. Fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = probe()
            if answer:
                return answer
            last = answer
        except Exception as error:  # not up yet, whatever the reason
            last = error
        time.sleep(interval)
    raise AssertionError(f"{what} not ready after {timeout:.0f}s: {last!r}")


class Stack:
    """podman with its storage in ``folder``, and one compose project of docker-compose.yml in it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        storage = folder / "storage.conf"
        storage.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{folder / "root"}"\nrunroot = "{folder / "run"}"\n'
        )
        self.project = f"imdbtest{secrets.token_hex(3)}"
        self.password = secrets.token_hex(24)
        self.ports = {
            name: free_port() for name in ("POSTGRES_PORT", "DAGSTER_PORT", "DAGSTER_READ_ONLY_PORT", "API_PORT")
        }
        self.mirror_port = free_port()
        self.env = (
            os.environ
            | {
                "CONTAINERS_CONF": str(PODMAN_DIR / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(storage),
                # buildah's cache mounts (uv's cache, in the Dockerfile) go under TMPDIR: this test's, so that it
                # builds as on a clean machine and leaves nothing behind.
                "TMPDIR": str(folder),
                "POSTGRES_PASSWORD": self.password,
                "POSTGRES_VERSION": POSTGRES_VERSION,
                # host.containers.internal is the host's address on the project's network, where the mirror listens.
                "IMDB_BASE_URL": f"http://host.containers.internal:{self.mirror_port}/",
                # The test launches its refresh through the API; the release sensor would start one of its own.
                "IMDB_SENSOR_DEFAULT_STATUS": "stopped",
            }
            | {name: str(port) for name, port in self.ports.items()}
        )
        self.timings: dict[str, float] = {}

    def run(self, *argv: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def timed(self, name: str, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        result = self.run(*argv, timeout=timeout)
        self.timings[name] = time.monotonic() - start
        return result

    def compose(self, *argv: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(podman_compose() or "podman-compose", "-p", self.project, *argv, timeout=timeout, check=check)

    def container(self, service: str) -> str:
        names = self.run(
            "podman", "ps", "--format", "{{.Names}}",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        assert len(names) == 1, (service, names)
        return names[0]

    def url(self, port: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def logs(self) -> str:
        out = []
        for line in self.run(
            "podman", "ps", "-a", "--format", "{{.Names}} {{.Status}}", check=False
        ).stdout.splitlines():
            name = line.split()[0]
            tail = self.run("podman", "logs", "--tail", "30", name, check=False)
            out.append(f"=== {line}\n{tail.stdout[-4000:]}{tail.stderr[-4000:]}")
        return "\n".join(out)

    def tear_down(self) -> None:
        self.compose("down", "-v", "-t", "5", timeout=300, check=False)
        self.run("podman", "network", "rm", "-f", f"{self.project}_default", check=False)
        # Only this storage's images (`podman system reset` would also remove every network of the machine's).
        self.run("podman", "rmi", "--all", "--force", timeout=300, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    missing = missing_tools()
    if missing:
        message = f"not installed: {', '.join(missing)} (.ci/run installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    stack = Stack(tmp_path / "podman")
    try:
        yield stack
    finally:
        stack.tear_down()
        print("timings (s):", json.dumps({k: round(v, 1) for k, v in stack.timings.items()}))


def build_images(stack: Stack) -> None:
    """The two stand-ins for the base images, then the project's image from the Dockerfile as a Docker user would
    build it; the PostgreSQL stand-in is built meanwhile. Builds reach PyPI through the machine's HTTPS proxy: its CA
    is mounted over the image's and named to pip and uv, as build settings, not in the Dockerfile."""
    script = str(PODMAN_DIR / "base-images.sh")
    stack.timed("python base image", "bash", script, "python")
    start = time.monotonic()
    postgres = subprocess.Popen(
        ["bash", script, "postgres"],
        env=stack.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proxy = []
    if HOST_CA.is_file():
        proxy = ["-v", f"{HOST_CA}:{HOST_CA}:ro", "--env", f"SSL_CERT_FILE={HOST_CA}", "--env", f"PIP_CERT={HOST_CA}"]
    try:
        stack.timed(
            "project image",
            "podman",
            "build",
            "--pull=never",
            *proxy,
            "-t",
            "imdb-assets:latest",
            "-f",
            "Dockerfile",
            ".",
        )
    finally:
        output, _ = postgres.communicate(timeout=900)
    stack.timings["postgres base image (during the project's)"] = time.monotonic() - start
    assert postgres.returncode == 0, output[-3000:]
    size = int(stack.run("podman", "image", "inspect", "--format", "{{.Size}}", "imdb-assets:latest").stdout)
    stack.timings["project image MB"] = size / 1e6


def start(stack: Stack) -> MirrorServer:
    """Every service up and answering; the mirror on the project's network."""
    start = time.monotonic()
    stack.compose("up", "-d", "--no-build")
    # The mirror listens only on the host's address on the project's network (host.containers.internal).
    gateway = json.loads(stack.run("podman", "network", "inspect", f"{stack.project}_default").stdout)[0]
    mirror_dir = stack.folder / "mirror"
    generate(mirror_dir, MIRROR_ROWS, seed=26)
    mirror = MirrorServer(mirror_dir, host=gateway["subnets"][0]["gateway"], port=stack.mirror_port)

    def healthy(service: str) -> bool:
        return stack.run("podman", "healthcheck", "run", stack.container(service), check=False).returncode == 0

    # podman 4.3 runs no healthcheck by itself (no systemd here): run them, as compose's conditions would.
    wait_for("postgres' healthcheck", lambda: healthy("postgres"), timeout=180)
    wait_for("the code server's healthcheck", lambda: healthy("imdb_code"), timeout=300)
    wait_for("the API's healthcheck", lambda: healthy("api"), timeout=300)
    location = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
    )
    for port in ("DAGSTER_PORT", "DAGSTER_READ_ONLY_PORT"):

        def loaded(port: str = port) -> bool:
            answer = httpx.post(stack.url(port, "/graphql"), json={"query": location}, timeout=10).json()
            entries = answer["data"]["workspaceOrError"]["locationEntries"]
            return [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
                ("imdb_assets", "RepositoryLocation")
            ]

        wait_for(f"the code location in the webserver on {port}", loaded, timeout=300)
    daemon = stack.container("daemon")
    assert stack.run("podman", "inspect", "--format", "{{.State.Running}}", daemon).stdout.strip() == "true"
    stack.timings["stack start"] = time.monotonic() - start
    return mirror


LAUNCH = """mutation($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector, mode: "default"}) { __typename ... on PythonError { message } }
}"""


def test_the_stack_builds_starts_refreshes_and_serves(stack: Stack) -> None:
    build_images(stack)
    mirror = start(stack)
    try:
        check_the_stack(stack, mirror)
    except BaseException:
        print(stack.logs())
        raise
    finally:
        mirror.stop()


def check_the_stack(stack: Stack, mirror: MirrorServer) -> None:
    # PostgreSQL: published on the host's loopback only.
    published = stack.run("podman", "port", stack.container("postgres")).stdout.split()
    assert published == ["5432/tcp", "->", f"127.0.0.1:{stack.ports['POSTGRES_PORT']}"], published

    # Keys, made as the README says, in the API's container.
    made = stack.run(
        "podman", "exec", stack.container("api"), "python", "-m", "imdb_api.keys", "create", "--role", "operator",
        "--name", "test_containers",
    )  # fmt: skip
    key = json.loads(made.stdout)["key"]
    api = httpx.Client(base_url=stack.url("API_PORT"), headers={"Authorization": f"Bearer {key}"}, timeout=30)

    # A refresh through the API: the operators' webserver launches it, the daemon dequeues it, it runs in imdb_code.
    start = time.monotonic()
    launched = api.post("/v1/refresh", json={})
    assert launched.status_code == 202, launched.text
    run_id = launched.json()["run_id"]

    def finished() -> str | None:
        status = api.get(f"/v1/runs/{run_id}").json()["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert wait_for("the refresh", finished, timeout=900, interval=3) == "SUCCESS"
    stack.timings["refresh"] = time.monotonic() - start
    assert mirror.gets(), "the refresh did not download from the test's mirror"

    # The marts, from the host, as the platform's role.
    url = f"postgresql://imdb:{stack.password}@127.0.0.1:{stack.ports['POSTGRES_PORT']}/imdb"
    with psycopg.connect(url) as conn:
        titles = conn.execute("SELECT count(*) FROM imdb_marts.titles").fetchone()
        top = conn.execute("SELECT tconst FROM imdb_marts.titles ORDER BY num_votes DESC NULLS LAST LIMIT 1").fetchone()
    assert titles and titles[0] > 0 and top

    # The API: answers with the key, refuses without one.
    answer = api.get(f"/v1/titles/{top[0]}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["tconst"] == top[0]
    assert api.get("/readyz").status_code == 200
    refused = httpx.get(stack.url("API_PORT", f"/v1/titles/{top[0]}"), timeout=30)
    assert refused.status_code == 401, refused.text

    # The viewers' webserver refuses a launch; the operators' one (what the API used) is the one that may.
    selector = {"repositoryLocationName": "imdb_assets", "repositoryName": "__repository__", "jobName": "imdb_refresh"}
    refusal = httpx.post(
        stack.url("DAGSTER_READ_ONLY_PORT", "/graphql"),
        json={"query": LAUNCH, "variables": {"selector": selector}},
        timeout=30,
    ).json()
    assert refusal["data"]["launchRun"]["__typename"] == "UnauthorizedError", refusal
