"""Daily releases applied as diffs, on generated releases of known churn served over HTTP: after three of them every
table and mart equals a fresh full load of the last release, the change log and the ratings history hold exactly
the generated changes, and what users attached to the tables is untouched. A connection killed in the middle of a
diff leaves the previous release whole, and the next run applies it."""

from __future__ import annotations

import email.utils
import hashlib
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from imdb_assets import history, load, parse
from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.defs.files.keys import HISTORY_KEY, table_key
from imdb_assets.defs.resources import Warehouse
from imdb_dev.releases import CHURN_RECORD, ReleaseRecord, generate_releases
from tests import reference
from tests.conftest import RATINGS, Platform, drop_database, fresh_database
from tests.mirror_server import MirrorServer
from tests.test_churn import BUSY

# The ratings history's marts, which a fresh load does not have: what they hold is tested in tests/test_api.py.
from tests.test_dbt import HISTORY_MARTS

DAYS = 3  # releases after the first
READER = "diff_test_reader"
MARTS_SCHEMA = "imdb_marts"


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> list[Path]:
    """A first release and three daily ones, busy enough that every kind of change happens in every file."""
    return generate_releases(tmp_path_factory.mktemp("releases"), rows=3_000, releases=DAYS, churn=BUSY)


def serve(release: Path, mirror: Path) -> None:
    """Put a release's seven files on the mirror, keeping their mtimes (the mirror's Last-Modified)."""
    for dataset in DATASETS:
        shutil.copy2(release / dataset.file_name, mirror)


class Site:
    """A mirror, a data folder and a database of the module's own, with the platform wired to them."""

    def __init__(self, root: Path, server_url: str, name: str, diff_max_share: float) -> None:
        self.server_url, self.name = server_url, name
        self.mirror_dir = root / "mirror"
        self.mirror_dir.mkdir(parents=True)
        self.mirror = MirrorServer(self.mirror_dir)
        self.platform = Platform(self.mirror.base_url, root / "data", fresh_database(server_url, name))
        self.platform.resources["warehouse"] = Warehouse(
            database_url=self.platform.db_url, data_dir=str(root / "data"), diff_max_share=diff_max_share
        )

    def refresh(self, release: Path, models: bool):
        serve(release, self.mirror_dir)
        return self.platform.refresh(models=models)

    def close(self) -> None:
        self.mirror.stop()
        drop_database(self.server_url, self.name)


USER_OBJECTS = [
    f"DO $$ BEGIN CREATE ROLE {READER}; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    f"GRANT USAGE ON SCHEMA {SCHEMA} TO {READER}",
    f"GRANT SELECT ON {SCHEMA}.title_ratings TO {READER}",
    f"CREATE VIEW public.well_rated AS SELECT tconst, num_votes FROM {SCHEMA}.title_ratings WHERE average_rating >= 7",
    f"COMMENT ON COLUMN {SCHEMA}.title_basics.primary_title IS 'a user''s own comment'",
]
# What a diff must leave as it was: every relation of the imdb schema and its partitions (by identity), the grants
# and the user's view and comment.
IDENTITIES = f"""
SELECT c.relname, c.oid, c.relkind FROM pg_class c
WHERE c.relnamespace IN ('{SCHEMA}'::regnamespace, 'imdb_partitions'::regnamespace) ORDER BY c.relname
"""
ATTACHED = f"""
SELECT (SELECT array_agg(privilege_type::text ORDER BY privilege_type) FROM information_schema.role_table_grants
        WHERE grantee = '{READER}' AND table_name = 'title_ratings'),
       col_description('{SCHEMA}.title_basics'::regclass, 3),
       (SELECT count(*) FROM pg_views WHERE viewname = 'well_rated')
"""


@pytest.fixture(scope="module")
def applied(releases, pg_server, tmp_path_factory):
    """The first release loaded whole with its models, then the user's objects added, then three releases applied
    as diffs (any share of changed rows), the models built after the last."""
    site = Site(tmp_path_factory.mktemp("applied"), pg_server, "diff_applied", diff_max_share=1.0)
    first = site.refresh(releases[0], models=True)
    for statement in USER_OBJECTS:
        site.platform.query(statement)
    before = site.platform.query(IDENTITIES)
    runs = [site.refresh(release, models=release == releases[-1]) for release in releases[1:]]
    yield site, first, runs, before
    site.close()
    with psycopg.connect(pg_server, autocommit=True) as conn:  # its grants went with the database
        conn.execute(f"DROP ROLE IF EXISTS {READER}")


@pytest.fixture(scope="module")
def reloaded(releases, pg_server, tmp_path_factory):
    """The last release loaded whole into an empty database, with its models."""
    site = Site(tmp_path_factory.mktemp("reloaded"), pg_server, "diff_reloaded", diff_max_share=1.0)
    site.refresh(releases[-1], models=True)
    yield site
    site.close()


def table_metadata(result, key) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {name: value.value for name, value in event.materialization.metadata.items()}


def test_each_release_after_the_first_is_applied_as_a_diff_of_its_true_changes(applied, releases):
    _, first, runs, _ = applied
    for dataset in DATASETS:
        loaded = table_metadata(first, table_key(dataset))
        assert (loaded["load_method"], loaded["rows_inserted"], loaded["rows_deleted"]) == (
            "full",
            loaded["dagster/row_count"],
            0,
        )
    for release, run in zip(releases[1:], runs, strict=True):
        record = ReleaseRecord.read(release / CHURN_RECORD)
        for dataset in DATASETS:
            metadata = table_metadata(run, table_key(dataset))
            truth = record.files[dataset.file_stem]
            assert metadata["load_method"] == "diff", dataset.table
            changes = (metadata["rows_inserted"], metadata["rows_changed"], metadata["rows_deleted"])
            assert changes == (truth.inserted, truth.changed, truth.deleted), (release.name, dataset.table)
            assert metadata["dagster/row_count"] == truth.rows
        assert table_metadata(run, HISTORY_KEY)["rows_of_this_release"] == sum(
            getattr(record.files["title.ratings"], kind) for kind in ("inserted", "changed", "deleted")
        )


def rows_of(platform: Platform, relation: str) -> list[tuple]:
    """Every row of ``relation``, in an order that depends only on its values."""
    return sorted(platform.query(f"SELECT * FROM {relation}"), key=repr)


def test_tables_and_marts_equal_a_full_load_of_the_last_release(applied, reloaded):
    site = applied[0]
    marts = [
        name
        for (name,) in reloaded.platform.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", MARTS_SCHEMA
        )
    ]
    marts = [m for m in marts if m not in HISTORY_MARTS]
    assert len(marts) >= 5
    # The last build followed the three releases' change log: no incremental mart was built whole.
    assert site.platform.query("SELECT count(*), bool_or(full_build) FROM imdb_meta.model_watermarks") == [(8, False)]
    for relation in [f"{SCHEMA}.{d.table}" for d in DATASETS] + [f"{MARTS_SCHEMA}.{m}" for m in marts]:
        diffed, whole = rows_of(site.platform, relation), rows_of(reloaded.platform, relation)
        assert diffed == whole, relation
        assert diffed or relation.startswith(MARTS_SCHEMA), relation  # too few votes for recommendations


def expected_history(releases: list[Path]) -> list[tuple]:
    """Read independently from the four releases' ratings files: a row per title and day its values changed."""
    rows, held = [], {}
    for release in releases:
        day = release.name  # the release's date
        current = {key[0]: row[1:] for key, row in reference.read(RATINGS, release / RATINGS.file_name).rows.items()}
        for tconst in sorted(current.keys() | held.keys()):
            if current.get(tconst) != held.get(tconst):
                rows.append((tconst, day, *current.get(tconst, (None, None))))
        held = current
    return sorted(rows)


def test_the_history_holds_exactly_the_generated_changes(applied, releases):
    site = applied[0]
    stored = site.platform.query(
        f"SELECT tconst, valid_from::text, average_rating, num_votes FROM {SCHEMA}.{history.HISTORY_TABLE} "
        "ORDER BY tconst, valid_from"
    )
    assert stored == expected_history(releases)


def test_the_change_log_holds_each_release_by_key(applied, releases):
    site = applied[0]
    logged = {
        (day, table, change): count
        for day, table, change, count in site.platform.query(
            "SELECT release_date::text, table_name, change, count(*) FROM imdb_meta.changes GROUP BY 1, 2, 3"
        )
    }
    expected = {(releases[0].name, d.table, "reload"): 1 for d in DATASETS}
    for release in releases[1:]:
        record = ReleaseRecord.read(release / CHURN_RECORD)
        for dataset in DATASETS:
            truth = record.files[dataset.file_stem]
            for change, count in (("insert", truth.inserted), ("update", truth.changed), ("delete", truth.deleted)):
                if count:
                    expected[(record.date, dataset.table, change)] = count
    assert logged == expected
    # Keys in the catalog's order, as text: a deleted principal's key is its title and ordering.
    [(key,)] = site.platform.query(
        "SELECT key FROM imdb_meta.changes WHERE table_name = 'title_principals' AND change = 'delete' LIMIT 1"
    )
    assert key[0].startswith("tt") and key[1].isdigit()


def test_a_diff_keeps_what_users_attached_and_every_relation(applied):
    site, _, _, before = applied
    assert site.platform.query(IDENTITIES) == before  # no table, partition or index was replaced
    assert site.platform.query(ATTACHED) == [(["SELECT"], "a user's own comment", 1)]
    well_rated = site.platform.query("SELECT count(*) FROM public.well_rated")[0][0]
    assert (
        well_rated
        == site.platform.query(f"SELECT count(*) FROM {SCHEMA}.title_ratings WHERE average_rating >= 7")[0][0]
    )


def parsed(release: Path, out: Path) -> tuple[str, str, str]:
    """title.ratings of ``release`` parsed into ``out``: the frame, the raw file's sha256 and Last-Modified."""
    raw = release / RATINGS.file_name
    sha = hashlib.sha256(raw.read_bytes()).hexdigest()
    modified = email.utils.formatdate(raw.stat().st_mtime, usegmt=True)
    frame = out / f"{release.name}.parquet"
    parse.parse_file(
        RATINGS,
        raw,
        frame,
        out / "rejects.tsv",
        source_sha256=sha,
        max_reject_fraction=1,
        source_last_modified=modified,
    )
    return str(frame), sha, modified


def test_a_connection_killed_mid_diff_leaves_the_previous_release_whole(releases, db_url, tmp_path):
    kept = tmp_path / "loaded"

    def load_release(release: Path, **options) -> load.LoadResult:
        frame, sha, modified = parsed(release, tmp_path)
        return load.load_table(
            RATINGS,
            frame,
            db_url,
            source_sha256=sha,
            source_last_modified=modified,
            kept_dir=kept,
            diff_max_share=1.0,
            **options,
        )

    assert load_release(releases[0]).method == load.FULL
    state = (
        "SELECT (SELECT count(*) FROM imdb.title_ratings), (SELECT sum(num_votes) FROM imdb.title_ratings), "
        "(SELECT source_sha256 FROM imdb_meta.loads), (SELECT count(*) FROM imdb_meta.changes), "
        f"(SELECT count(*) FROM {SCHEMA}.{history.HISTORY_TABLE})"
    )
    with psycopg.connect(db_url, autocommit=True) as watcher:
        before = watcher.execute(state).fetchone()
        # A reader's lock that the diff's writes wait behind, so that it is surely mid-transaction when killed.
        blocker = psycopg.connect(db_url)
        blocker.execute("LOCK TABLE imdb.title_ratings IN SHARE MODE")
        failure: list[BaseException] = []

        def diff() -> None:
            try:
                load_release(releases[1])
            except BaseException as error:
                failure.append(error)

        worker = threading.Thread(target=diff)
        worker.start()
        waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM%%'"
        for _ in range(200):
            if pids := watcher.execute(waiting).fetchall():
                break
            time.sleep(0.05)
        assert pids, "the diff never reached its writes"
        watcher.execute("SELECT pg_terminate_backend(%s)", pids[0])
        worker.join(30)
        blocker.close()
        assert failure and "terminat" in str(failure[0]).lower()
        assert watcher.execute(state).fetchone() == before
    result = load_release(releases[1])
    assert result.method == load.DIFF
    truth = reference.read(RATINGS, releases[1] / RATINGS.file_name).rows
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT tconst, average_rating, num_votes FROM imdb.title_ratings ORDER BY 1").fetchall()
    assert stored == sorted(truth.values())


def test_churn_above_the_threshold_loads_whole_to_the_same_table(releases, db_url, tmp_path):
    kept = tmp_path / "loaded"
    results = []
    for release, share in ((releases[0], 1.0), (releases[1], 0.01)):
        frame, sha, modified = parsed(release, tmp_path)
        results.append(
            load.load_table(
                RATINGS,
                frame,
                db_url,
                source_sha256=sha,
                source_last_modified=modified,
                kept_dir=kept,
                diff_max_share=share,
            )
        )
    second = results[1]
    assert second.method == load.FULL and second.diff is not None and second.diff.share > 0.01
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT * FROM imdb.title_ratings ORDER BY 1").fetchall()
        log = conn.execute("SELECT release_date::text, change, key FROM imdb_meta.changes ORDER BY id").fetchall()
    assert stored == sorted(reference.read(RATINGS, releases[1] / RATINGS.file_name).rows.values())
    assert log == [(releases[0].name, "reload", None), (releases[1].name, "reload", None)]
    assert [p.name for p in kept.iterdir()] == [
        Path(load.kept_frame(kept, RATINGS, parsed(releases[1], tmp_path)[1])).name
    ]
