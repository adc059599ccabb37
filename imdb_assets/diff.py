"""What changed between two parsed frames of one dataset: rows inserted, changed and deleted, by primary key.

Both frames are joined on the dataset's key and whole rows compared, by a hash of their values computed in this
process only (Polars' row hashes are stable only within one Polars version, so they are never stored). Memory stays
bounded: the frames are cut into ranges of the first key column, at row groups' smallest keys, and each range is
joined on its own; IMDb's files are in key order, so each range reads only its own row groups of either frame.

Used by ``imdb churn`` to count a release's changes, and by the load to apply a release as a diff: then the changed
rows are written to Parquet (the new rows with their kind of change, and the deleted keys) for the load to send.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from imdb_assets import storage
from imdb_assets.catalog import Dataset
from imdb_assets.storage import Location

PARTITION_ROWS = 5_000_000  # rows of a frame joined at once: keys and a hash each, a few hundred MB at most
CHANGE = "change"  # the column of the changed rows' frame that says 'insert' or 'update'
INSERT, UPDATE, DELETE = "insert", "update", "delete"
_OLD_HASH, _NEW_HASH = "old_row_hash", "new_row_hash"


@dataclass(frozen=True)
class FrameDiff:
    old_rows: int
    new_rows: int
    inserted: int  # keys only in the new frame
    changed: int  # keys in both whose rows differ in any column
    deleted: int  # keys only in the old frame
    # Written only when asked for: the new frame's inserted and changed rows, with CHANGE; the deleted keys.
    rows_path: Path | None = None
    deleted_path: Path | None = None

    @property
    def written(self) -> int:
        """Rows a diff writes: inserted, changed and deleted."""
        return self.inserted + self.changed + self.deleted

    @property
    def share(self) -> float:
        """Rows written per row of the old frame (1.0 when it had none)."""
        return self.written / self.old_rows if self.old_rows else 1.0


def key_ranges(dataset: Dataset, frame: Location, rows: int) -> list[tuple[Any, Any]]:
    """Ranges [low, high) of the first key column (None: unbounded) of about ``PARTITION_ROWS`` rows of ``frame``
    each, cut at row groups' smallest keys; one unbounded range without statistics or rows to share."""
    parts = math.ceil(rows / PARTITION_ROWS)
    metadata = storage.parquet_file(frame).metadata
    key = dataset.primary_key[0]
    least = []
    for group in map(metadata.row_group, range(metadata.num_row_groups)):
        statistics = next(c.statistics for c in map(group.column, range(group.num_columns)) if c.path_in_schema == key)
        if statistics is None or not statistics.has_min_max:
            return [(None, None)]
        least.append(statistics.min)
    least.sort()
    cuts = sorted({least[len(least) * n // parts] for n in range(1, parts)} - {least[0]}) if parts > 1 else []
    return list(zip([None, *cuts], [*cuts, None], strict=True))


def _in_range(column: str, low: Any, high: Any) -> pl.Expr:
    condition = pl.lit(True)
    if low is not None:
        condition &= pl.col(column) >= low
    if high is not None:
        condition &= pl.col(column) < high
    return condition


def diff_frames(dataset: Dataset, old: Location, new: Location, out_dir: Path | None = None) -> FrameDiff:
    """Compare two parsed frames of ``dataset`` by key and whole row. With ``out_dir``, also write there the new
    frame's inserted and changed rows (``rows.parquet``, the catalog's columns and CHANGE) and the deleted keys
    (``deleted.parquet``)."""
    keys = list(dataset.primary_key)
    names = [c.name for c in dataset.columns]
    values = [name for name in names if name not in keys]
    old_scan, new_scan = storage.scan_parquet(old).select(names), storage.scan_parquet(new).select(names)
    old_rows = old_scan.select(pl.len()).collect().item()
    new_rows = new_scan.select(pl.len()).collect().item()
    ranges = key_ranges(dataset, new, max(old_rows, new_rows))
    counts = {INSERT: 0, UPDATE: 0, DELETE: 0}
    changed_parts: list[Path] = []
    deleted_parts: list[Path] = []
    for number, (low, high) in enumerate(ranges):
        within = _in_range(keys[0], low, high)
        old_part, new_part = old_scan.filter(within), new_scan.filter(within)
        joined = (
            new_part.select(*keys, pl.struct(values).hash(seed=0).alias(_NEW_HASH))
            .join(
                old_part.select(*keys, pl.struct(values).hash(seed=0).alias(_OLD_HASH)),
                on=keys,
                how="full",
                coalesce=True,
            )
            .with_columns(
                pl.when(pl.col(_OLD_HASH).is_null())
                .then(pl.lit(INSERT))
                .when(pl.col(_NEW_HASH).is_null())
                .then(pl.lit(DELETE))
                .when(pl.col(_OLD_HASH) != pl.col(_NEW_HASH))
                .then(pl.lit(UPDATE))
                .alias(CHANGE)
            )
            .filter(pl.col(CHANGE).is_not_null())
            .select(*keys, CHANGE)
            .collect(engine="streaming")
        )
        for kind, count in joined.group_by(CHANGE).len().iter_rows():
            counts[kind] += count
        if out_dir is None:
            continue
        written = joined.filter(pl.col(CHANGE) != DELETE)
        changed = new_part.join(written.lazy(), on=keys, how="inner").collect(engine="streaming")
        deleted = joined.filter(pl.col(CHANGE) == DELETE).select(keys)
        for frames, frame, name in ((changed_parts, changed, "rows"), (deleted_parts, deleted, "deleted")):
            path = out_dir / f"{name}.{number}.parquet"
            frame.write_parquet(path)
            frames.append(path)
    diff = FrameDiff(old_rows, new_rows, counts[INSERT], counts[UPDATE], counts[DELETE])
    if out_dir is None:
        return diff
    rows_path, deleted_path = out_dir / "rows.parquet", out_dir / "deleted.parquet"
    _concatenate(changed_parts, rows_path)
    _concatenate(deleted_parts, deleted_path)
    return FrameDiff(**{**diff.__dict__, "rows_path": rows_path, "deleted_path": deleted_path})


def _concatenate(parts: list[Path], target: Path) -> None:
    """The parts' rows in one Parquet file, the parts removed."""
    pl.scan_parquet(parts).sink_parquet(target)
    for part in parts:
        part.unlink()
