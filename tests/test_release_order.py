"""Release order on generated daily releases served over HTTP: an older release is refused before anything changes,
the same release twice writes nothing, a skipped day loads, a truncated new release changes nothing, and a rollback
is taken only when asked for."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from dagster import materialize

from imdb_assets import download, release
from imdb_assets.defs.files.assets import imdb_file_assets
from imdb_assets.defs.files.keys import parsed_key, raw_key, table_key
from imdb_dev.releases import FIRST_DATE, generate_releases, release_folder
from tests.conftest import RATINGS, Platform, changed_keys

DAY_1, DAY_2, DAY_3 = "2024-03-01", "2024-03-02", "2024-03-03"
LOADS = "SELECT source_sha256, source_last_modified, loaded_at FROM imdb_meta.loads WHERE table_name = %s"
PARTITIONS = "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass ORDER BY 1"


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Path:
    """Three daily releases of a small IMDb, from 2024-03-01; tests copy their files, never change them."""
    out = tmp_path_factory.mktemp("releases")
    generate_releases(out, rows=2_000, releases=2)
    assert date.fromisoformat(DAY_1) == FIRST_DATE
    return out


@pytest.fixture
def mirror_dir(tmp_path: Path) -> Path:
    """An empty mirror (not conftest's copy of the generated files): each test serves the releases it needs."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    return folder


@pytest.fixture
def serve(releases: Path, mirror_dir: Path):
    """Put a release's title.ratings on the mirror, keeping its mtime, which the mirror sends as Last-Modified."""

    def serve(day: str) -> None:
        shutil.copy2(release_folder(releases, date.fromisoformat(day)) / RATINGS.file_name, mirror_dir)

    return serve


def state(platform: Platform) -> tuple:
    """Everything a refused or idle refresh must leave as it was: rows, the load record, partitions, local copy."""
    raw = platform.store.raw_path(RATINGS)
    return (
        platform.table(RATINGS),
        platform.query(LOADS, RATINGS.table),
        platform.query(PARTITIONS, f"imdb.{RATINGS.table}"),
        raw.read_bytes(),
        download.LocalCopy.read(raw),
    )


def failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return str(failure.event_specific_data.error)


def refresh_with(platform: Platform, layers, **config):
    """Refresh title.ratings' ``layers`` with this FileRefreshConfig, as an operator's run config would."""
    return materialize(
        imdb_file_assets,
        selection=[layer(RATINGS) for layer in layers],
        resources=platform.resources,
        instance=platform.instance,
        run_config={"ops": {f"refresh_{RATINGS.table}": {"config": config}}},
        raise_on_error=False,
    )


def test_older_release_is_refused_and_changes_nothing(platform, serve):
    serve(DAY_2)
    platform.refresh(RATINGS)
    before = state(platform)
    serve(DAY_1)
    result = platform.refresh(RATINGS, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "OlderReleaseRefused" in message and RATINGS.file_name in message
    assert f"of {DAY_1} 00:00:00 UTC" in message and f"of {DAY_2} 00:00:00 UTC" in message
    assert "allow_older_release: true" in message
    assert state(platform) == before
    assert not list(platform.store.raw_path(RATINGS).parent.glob(".*.part")), "no partial file left behind"


def test_load_refuses_an_older_release_the_download_let_through(platform, serve):
    """The load's own guard: a copy taken with allow_older_release is still refused by a run without it."""
    serve(DAY_2)
    platform.refresh(RATINGS)
    loaded = platform.table(RATINGS), platform.query(LOADS, RATINGS.table)
    serve(DAY_1)
    assert refresh_with(platform, (raw_key, parsed_key), allow_older_release=True).success
    result = refresh_with(platform, (table_key,))
    assert not result.success
    assert f"of {DAY_1} 00:00:00 UTC" in failure_message(result)
    assert (platform.table(RATINGS), platform.query(LOADS, RATINGS.table)) == loaded


def test_rollback_when_asked(platform, serve):
    serve(DAY_2)
    platform.refresh(RATINGS)
    serve(DAY_1)
    assert refresh_with(platform, (raw_key, parsed_key, table_key), allow_older_release=True).success
    [(_, last_modified, _)] = platform.query(LOADS, RATINGS.table)
    assert release.release_date(last_modified).date().isoformat() == DAY_1


def test_same_release_twice_writes_nothing(platform, serve):
    serve(DAY_2)
    platform.refresh(RATINGS)
    before = state(platform)
    result = platform.refresh(RATINGS)
    assert changed_keys(result) == set()
    assert state(platform) == before  # loaded_at included: the load record was not even rewritten


def test_skipped_day_loads(platform, serve, releases):
    serve(DAY_1)
    platform.refresh(RATINGS)
    serve(DAY_3)
    result = platform.refresh(RATINGS)
    assert {f"imdb/{RATINGS.table}"} <= changed_keys(result)
    [(_, last_modified, _)] = platform.query(LOADS, RATINGS.table)
    assert release.release_date(last_modified).date().isoformat() == DAY_3
    assert platform.table(RATINGS) != []


def test_truncated_new_release_changes_nothing_until_it_is_whole(platform, serve, mirror_dir):
    serve(DAY_1)
    platform.refresh(RATINGS)
    before = state(platform)
    serve(DAY_2)
    served = mirror_dir / RATINGS.file_name
    whole = served.read_bytes()
    stat = served.stat()
    served.write_bytes(whole[: len(whole) // 2])
    os.utime(served, (stat.st_atime, stat.st_mtime))  # still dated as day 2's release
    result = platform.refresh(RATINGS, raise_on_error=False)
    assert not result.success and "truncated gzip" in failure_message(result)
    assert state(platform) == before
    serve(DAY_2)
    platform.refresh(RATINGS)
    [(_, last_modified, _)] = platform.query(LOADS, RATINGS.table)
    assert release.release_date(last_modified).date().isoformat() == DAY_2


def test_download_of_an_older_file_url_keeps_the_copy(releases, tmp_path):
    """file:// dates a release by its mtime; the refusal comes before the copy is read, so the old one stays."""
    dest = tmp_path / RATINGS.file_name
    newer = release_folder(releases, date.fromisoformat(DAY_2)) / RATINGS.file_name
    older = release_folder(releases, date.fromisoformat(DAY_1)) / RATINGS.file_name
    held = download.download(newer.as_uri(), dest).copy
    with pytest.raises(release.OlderReleaseRefused, match=f"of {DAY_1} .* of {DAY_2} "):
        download.download(older.as_uri(), dest, not_older_than=held.version.modified)
    assert download.LocalCopy.read(dest) == held
    assert dest.read_bytes() == newer.read_bytes()


@pytest.mark.parametrize(
    ("offered", "held"),
    [
        (None, "Sat, 02 Mar 2024 00:00:00 GMT"),  # a server that sends no Last-Modified
        ("Fri, 01 Mar 2024 00:00:00 GMT", None),  # a table loaded from such a server
        ("not a date", "Sat, 02 Mar 2024 00:00:00 GMT"),
        ("Sat, 02 Mar 2024 00:00:00 GMT", "Sat, 02 Mar 2024 00:00:00 GMT"),  # republished the same day
    ],
)
def test_a_release_without_a_comparable_date_is_accepted(offered, held):
    release.refuse_older(RATINGS.file_name, offered, held)


def test_newest_of_the_dates_held():
    assert release.newest(None, "Fri, 01 Mar 2024 00:00:00 GMT", "Sun, 03 Mar 2024 00:00:00 GMT") == (
        "Sun, 03 Mar 2024 00:00:00 GMT"
    )
    assert release.newest(None, "") is None
