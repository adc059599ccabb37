"""`IMDB_DATA_DIR=s3://bucket/prefix`: files in an S3 bucket, over real HTTP, on moto's server (imdb_dev/s3_server.py).

A whole refresh with its models, each step a process of its own in an empty folder, keeps every file in the bucket
and loads the tables the files hold; the next release is applied as a diff against the frame kept in the bucket. A
missing bucket, denied credentials and an endpoint that goes away mid-upload fail the step with an error naming the
bucket and the key, the tables as they were.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imdb_assets import settings
from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.defs.files.keys import table_key
from imdb_dev.s3_server import S3Server
from tests.conftest import RATINGS, Platform
from tests.dagster_dev import DAGSTER, fresh_home, platform_env
from tests.mirror_server import MirrorServer
from tests.test_pipeline import assert_table_matches_file, rejected_lines
from tests.test_release_order import failure_message

PREFIX = "imdb"


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def aws(s3: S3Server, monkeypatch) -> S3Server:
    """The standard AWS variables of this process point at ``s3``, as a deployment's environment would."""
    for name, value in s3.environment().items():
        monkeypatch.setenv(name, value)
    return s3


@pytest.fixture
def bucket(aws: S3Server, request) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    aws.client().create_bucket(Bucket=name)
    return name


def kept_frames(s3: S3Server, bucket: str) -> list[str]:
    return sorted(s3.keys(bucket, f"{PREFIX}/loaded/"))


def test_a_run_of_isolated_steps_keeps_its_files_in_the_bucket_and_diffs_against_them(
    aws, bucket, mirror, mirror_dir, db_url, tmp_path
):
    """`imdb_refresh` by `dagster job execute`, each step a process of its own in an empty working and temporary
    directory (IMDB_STEP_EXECUTOR=process), as pods: the steps share only the bucket and the database."""
    cwd, run_tmp = tmp_path / "cwd", tmp_path / "run-tmp"
    cwd.mkdir()
    run_tmp.mkdir()
    env = platform_env(
        fresh_home(tmp_path, "dagster_object_storage"),
        IMDB_BASE_URL=mirror.base_url,
        DATABASE_URL=db_url,
        IMDB_DATA_DIR=f"s3://{bucket}/{PREFIX}",
        IMDB_MAX_REJECT_FRACTION="0.05",
        IMDB_STEP_EXECUTOR="process",
        TMPDIR=str(run_tmp),
    )
    run = subprocess.run(
        [DAGSTER, "job", "execute", "-m", "imdb_assets.definitions", "-j", "imdb_refresh"],
        env=env | aws.environment(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-5000:]
    steps = re.findall(r'Executing step "(\S+)" in process (\d+), in (\S+) with TMPDIR=(\S+)\.', run.stderr)
    assert sorted(step for step, *_ in steps) == sorted([f"refresh_{d.table}" for d in DATASETS] + ["imdb_dbt_models"])
    assert len({pid for _, pid, *_ in steps}) == len({work for *_, work, _ in steps}) == len(steps)
    assert all(Path(work).parent.parent == run_tmp for *_, work, _ in steps)
    assert list(run_tmp.iterdir()) == [], "a step's folder was left behind"
    assert list(cwd.iterdir()) == []

    platform = Platform(mirror.base_url, f"s3://{bucket}/{PREFIX}", db_url)
    for dataset in DATASETS:
        expected = assert_table_matches_file(platform, dataset, mirror_dir / dataset.file_name)
        assert rejected_lines(platform, dataset) == expected.rejected_lines
    titles = platform.query(f"SELECT count(*) FROM {SCHEMA}.title_basics")[0][0]
    assert platform.query("SELECT count(*) FROM imdb_marts.titles") == [(titles,)]
    stored = aws.keys(bucket)
    for dataset in DATASETS:
        for key in (
            f"raw/{dataset.file_name}",
            f"raw/{dataset.file_name}.json",
            f"parsed/{dataset.table}.parquet",
            f"parsed/{dataset.table}.parquet.json",
            f"rejects/{dataset.table}.tsv",
        ):
            assert stored[f"{PREFIX}/{key}"] > 0, key
    assert len(kept_frames(aws, bucket)) == len(DATASETS)
    assert not [key for key in stored if key.rsplit("/", 1)[-1].startswith(".")], "a temporary object was left"

    # The next release: votes moved for ten titles. It is applied as a diff against the frame kept in the bucket.
    path = mirror_dir / RATINGS.file_name
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    for number in range(1, 11):
        fields = lines[number].split(b"\t")
        if len(fields) == 3 and fields[2].isdigit():
            lines[number] = b"\t".join([fields[0], fields[1], str(int(fields[2]) + 7).encode()])
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    result = platform.refresh(RATINGS)
    table = result.asset_materializations_for_node(f"refresh_{RATINGS.table}")
    metadata = next(m.metadata for m in table if m.asset_key == table_key(RATINGS))
    assert metadata["load_method"].value == "diff"
    assert 0 < metadata["rows_changed"].value <= 10
    assert_table_matches_file(platform, RATINGS, path)
    kept = [key for key in kept_frames(aws, bucket) if f"/{RATINGS.table}." in key]
    assert kept == [f"{PREFIX}/loaded/{RATINGS.table}.{metadata['source_sha256'].value}.parquet"]


def loaded_platform(mirror: MirrorServer, tmp_path: Path, db_url: str) -> Platform:
    """title.ratings loaded from a folder: the tables a failing bucket must leave as they are."""
    local = Platform(mirror.base_url, tmp_path / "data", db_url)
    local.refresh(RATINGS)
    return local


def test_a_missing_bucket_is_named_and_the_tables_stay(aws, mirror, db_url, tmp_path):
    before = loaded_platform(mirror, tmp_path, db_url).table(RATINGS)
    platform = Platform(mirror.base_url, f"s3://no-such-bucket/{PREFIX}", db_url)
    result = platform.refresh(RATINGS, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "bucket 'no-such-bucket'" in message and "does not exist" in message, message
    assert aws.endpoint in message
    assert platform.table(RATINGS) == before
    assert "no-such-bucket" not in {b["Name"] for b in aws.client().list_buckets()["Buckets"]}


def test_denied_credentials_are_named_and_the_tables_stay(mirror, db_url, tmp_path, monkeypatch):
    before = loaded_platform(mirror, tmp_path, db_url).table(RATINGS)
    guarded = S3Server(tmp_path / "moto-auth.log", authenticate=True)
    try:
        for name, value in guarded.environment().items():
            monkeypatch.setenv(name, value)
        platform = Platform(mirror.base_url, f"s3://guarded/{PREFIX}", db_url)
        result = platform.refresh(RATINGS, raise_on_error=False)
    finally:
        guarded.stop()
    message = failure_message(result)
    assert "access denied for AWS_ACCESS_KEY_ID=imdb-test-key" in message, message
    assert "bucket 'guarded'" in message
    assert platform.table(RATINGS) == before


def test_an_endpoint_gone_mid_upload_is_named_and_the_tables_stay(mirror, db_url, tmp_path, monkeypatch):
    before = loaded_platform(mirror, tmp_path, db_url).table(RATINGS)
    leaving = S3Server(tmp_path / "moto-leaving.log")
    for name, value in leaving.environment().items():
        monkeypatch.setenv(name, value)
    leaving.client().create_bucket(Bucket="leaving")
    platform = Platform(mirror.base_url, f"s3://leaving/{PREFIX}", db_url)
    mirror.fail_next("pause")

    def stop_the_store_mid_download() -> None:
        mirror.paused.wait(60)
        leaving.stop()
        mirror.resume.set()

    stopper = threading.Thread(target=stop_the_store_mid_download)
    stopper.start()
    try:
        result = platform.refresh(RATINGS, raise_on_error=False)
    finally:
        mirror.resume.set()
        stopper.join()
        leaving.stop()
    message = failure_message(result)
    assert f"key '{PREFIX}/raw/" in message and "bucket 'leaving'" in message, message
    assert "cannot be reached" in message, message
    assert platform.table(RATINGS) == before


def test_a_data_dir_of_another_scheme_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/imdb")
    monkeypatch.setenv("IMDB_DATA_DIR", "gs://bucket/imdb")
    with pytest.raises(settings.SettingsError, match=r"IMDB_DATA_DIR='gs://bucket/imdb': the scheme gs:// is not"):
        settings.load()


def test_a_bucket_needs_a_database_server(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("IMDB_DATA_DIR", "s3://bucket/imdb")
    with pytest.raises(settings.SettingsError, match="set DATABASE_URL"):
        settings.load()
