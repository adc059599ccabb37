"""Daily releases from the generator, and `imdb churn` measuring them: its counts are the generator's true changes.

The releases are real gzipped files read back independently (tests/test_sample.py's checks); the churn command
parses them as a load would. No mocks.
"""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from imdb_assets import churn, diff, parse
from imdb_assets.catalog import BY_STEM, DATASETS
from imdb_dev.releases import CHURN_RECORD, Churn, ReleaseRecord, generate_releases
from tests.test_sample import classify, column, rows, sort_key

DAYS = 3
# Far above the defaults, so on a small release every kind of change happens many times, and some titles get two.
BUSY = Churn(
    rating_moves=0.3,
    new_titles=0.03,
    new_names=0.03,
    retitles=0.05,
    genre_edits=0.05,
    deaths=0.03,
    credits_added=0.05,
    credits_removed=0.03,
    deleted_titles=0.02,
)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate_releases(tmp_path_factory.mktemp("releases"), rows=4000, releases=DAYS, seed=11, churn=BUSY)


def counts(results: list[churn.FileChurn]) -> dict[str, tuple[int, int, int]]:
    return {r.file: (r.inserted, r.changed, r.deleted) for r in results}


def truth(folder: Path) -> dict[str, tuple[int, int, int]]:
    record = ReleaseRecord.read(folder / CHURN_RECORD)
    return {stem: (f.inserted, f.changed, f.deleted) for stem, f in record.files.items()}


def test_the_churn_measured_is_the_generators_truth_every_day(releases: list[Path]) -> None:
    for before, after in itertools.pairwise(releases):
        measured = churn.measure(before, after)
        assert [r.file for r in measured] == [d.file_stem for d in DATASETS]
        assert counts(measured) == truth(after), after.name
        record = ReleaseRecord.read(after / CHURN_RECORD)
        assert {r.file: r.new_rows for r in measured} == {s: f.rows for s, f in record.files.items()}
        # Every kind of change happened: the test would prove little otherwise.
        true = truth(after)
        assert all(n > 0 for n in true["title.basics"]), true
        assert all(true[stem][0] > 0 and true[stem][2] > 0 for stem in ("title.crew", "title.akas", "title.principals"))
        assert all(n > 0 for n in (*true["title.ratings"][:2], *true["name.basics"][:2])), true


def test_across_several_days_and_the_other_way(releases: list[Path]) -> None:
    first, last = releases[0], releases[-1]
    forward = {r.file: r for r in churn.measure(first, last)}
    backward = {r.file: r for r in churn.measure(last, first)}
    for stem, change in forward.items():
        assert (backward[stem].inserted, backward[stem].changed, backward[stem].deleted) == (
            change.deleted,
            change.changed,
            change.inserted,
        )
        assert change.new_rows - change.old_rows == change.inserted - change.deleted


def test_the_same_release_twice_has_no_churn(releases: list[Path]) -> None:
    for result in churn.measure(releases[1], releases[1]):
        assert (result.inserted, result.changed, result.deleted, result.share_changed) == (0, 0, 0, 0.0)
        assert result.old_rows == result.new_rows > 0


def test_a_row_edited_in_an_odd_title_is_one_change(releases: list[Path], tmp_path: Path) -> None:
    """With quoting on, the lone quote would swallow the lines after it; the edit is one changed row, nothing else."""
    original = releases[-1]
    edited = tmp_path / "edited"
    edited.mkdir()
    for dataset in DATASETS:
        (edited / dataset.file_name).write_bytes((original / dataset.file_name).read_bytes())
    path = edited / BY_STEM["title.basics"].file_name
    lines = gzip.decompress(path.read_bytes()).decode().split("\n")
    odd = next(i for i, line in enumerate(lines) if line.split("\t")[2] == '"Lone leading quote')
    fields = lines[odd].split("\t")
    fields[-1] = "Horror" if fields[-1] != "Horror" else "Comedy"
    lines[odd] = "\t".join(fields)
    path.write_bytes(gzip.compress("\n".join(lines).encode()))

    measured = counts(churn.measure(original, edited))
    assert measured == {stem: (0, 1, 0) if stem == "title.basics" else (0, 0, 0) for stem in BY_STEM}


def test_daily_releases_are_valid_imdb_files_with_consistent_keys(releases: list[Path]) -> None:
    for folder in releases[1:]:
        for dataset in DATASETS:
            data = rows(folder, dataset.file_stem)
            seen: set[tuple[str | int, ...]] = set()
            assert [classify(dataset, fields, seen) for fields in data] == [None] * len(data)
            keys = [sort_key(dataset, fields) for fields in data]
            assert keys == sorted(keys), (folder.name, dataset.file_stem)
        titles = column(folder, "title.basics", "tconst")
        people = set(column(folder, "name.basics", "nconst"))
        types = dict(zip(titles, column(folder, "title.basics", "title_type"), strict=True))
        assert column(folder, "title.crew", "tconst") == titles
        assert set(column(folder, "title.ratings", "tconst")) <= set(titles)
        assert set(column(folder, "title.episode", "tconst")) == {t for t, kind in types.items() if kind == "tvEpisode"}
        assert {types[p] for p in column(folder, "title.episode", "parent_tconst")} <= {"tvSeries", "tvMiniSeries"}
        assert set(column(folder, "title.principals", "tconst")) <= set(titles)
        assert set(column(folder, "title.principals", "nconst")) <= people
        assert set(column(folder, "title.akas", "title_id")) <= set(titles)


def test_releases_are_dated_and_deterministic(releases: list[Path], tmp_path: Path) -> None:
    assert [folder.name for folder in releases] == ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
    for folder in releases:
        midnight = datetime.combine(date.fromisoformat(folder.name), datetime.min.time(), tzinfo=UTC).timestamp()
        assert {(folder / d.file_name).stat().st_mtime for d in DATASETS} == {midnight}
    again = generate_releases(tmp_path, rows=4000, releases=1, seed=11, churn=BUSY)
    for folder, copy in zip(releases, again, strict=False):
        for dataset in DATASETS:
            assert (copy / dataset.file_name).read_bytes() == (folder / dataset.file_name).read_bytes()


def test_knobs_are_checked() -> None:
    assert Churn.parse("rating_moves=0.5, deaths=0") == Churn(rating_moves=0.5, deaths=0)
    with pytest.raises(ValueError, match="unknown churn knob 'votes'"):
        Churn.parse("votes=0.1")
    with pytest.raises(ValueError, match="between 0 and 1"):
        Churn(new_titles=2)


def test_the_command_prints_the_churn_and_its_json(releases: list[Path]) -> None:
    before, after = (str(folder) for folder in releases[:2])
    command = [sys.executable, "-m", "imdb_assets.cli", "churn"]
    printed = subprocess.run([*command, before, after], capture_output=True, text=True, check=True).stdout
    header, *lines = printed.splitlines()
    assert header.split() == ["file", "old", "rows", "new", "rows", "inserted", "changed", "deleted", "share"]
    expected = truth(releases[1])
    record = ReleaseRecord.read(releases[1] / CHURN_RECORD)
    for line in lines:
        stem, _, new, inserted, changed, deleted, share = line.split()
        assert tuple(int(n.replace(",", "")) for n in (inserted, changed, deleted)) == expected[stem]
        assert int(new.replace(",", "")) == record.files[stem].rows
        assert share.endswith("%")
    assert len(lines) == len(DATASETS)

    as_json = subprocess.run([*command, "--json", before, after], capture_output=True, text=True, check=True)
    parsed = json.loads(as_json.stdout)
    assert {f["file"]: (f["inserted"], f["changed"], f["deleted"]) for f in parsed} == expected
    ratings = next(f for f in parsed if f["file"] == "title.ratings")
    share = (ratings["inserted"] + ratings["changed"] + ratings["deleted"]) / ratings["old_rows"]
    assert ratings["share_changed"] == pytest.approx(share)

    missing = subprocess.run([*command, before, "/nonexistent"], capture_output=True, text=True)
    assert missing.returncode == 2 and "/nonexistent is not a folder" in missing.stderr


def test_partitioned_comparison_counts_the_same(
    releases: list[Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Large files are joined in ranges of their keys: the counts do not depend on it."""
    monkeypatch.setattr(diff, "PARTITION_ROWS", 100)
    monkeypatch.setattr(parse, "ROW_GROUP_ROWS", 50)  # row groups to cut ranges at
    assert counts(churn.measure(releases[0], releases[1])) == truth(releases[1])
    principals = BY_STEM["title.principals"]
    frame = tmp_path / "principals.parquet"
    rows = parse.parse_file(
        principals,
        releases[1] / principals.file_name,
        frame,
        tmp_path / "rejects.tsv",
        source_sha256="",
        max_reject_fraction=0,
    ).rows
    assert len(diff.key_ranges(principals, frame, rows)) > 10
