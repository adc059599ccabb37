"""How much of each IMDb file changed between two releases: rows inserted, changed and deleted, by primary key.

IMDb publishes full snapshots and no figures for how much of them changes per day, so this measures it: each file
of both releases is parsed as a load would parse it (``parse.parse_file``: quoting off, bad lines rejected, the first
of a repeated key kept) into a temporary Parquet frame, then the two frames are joined on the dataset's key and the
whole rows compared. Memory stays bounded: rows are split into partitions by a hash of their key, each partition
joined on its own, and rows are compared by a hash of their values computed in this process only (Polars' row
hashes are stable only within one Polars version, so they are never stored).

    uv run imdb churn releases/2024-03-01 releases/2024-03-02 [--json]
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from imdb_assets.catalog import DATASETS, Dataset
from imdb_assets.parse import parse_file

PARTITION_ROWS = 5_000_000  # rows of a frame joined at once: keys and a hash each, a few hundred MB at most
ROW_HASH = "row_hash"


@dataclass(frozen=True)
class FileChurn:
    file: str  # file stem, e.g. "title.ratings"
    old_rows: int
    new_rows: int
    inserted: int  # keys only in the new release
    changed: int  # keys in both whose rows differ in any column
    deleted: int  # keys only in the old release
    old_rejected: int = 0  # lines the parser rejected, not counted as rows
    new_rejected: int = 0

    @property
    def share_changed(self) -> float:
        """Rows a diff would write (inserted, changed, deleted) per row of the old release."""
        return (self.inserted + self.changed + self.deleted) / self.old_rows if self.old_rows else 0.0


def compare_frames(dataset: Dataset, old: Path, new: Path) -> tuple[int, int, int]:
    """(inserted, changed, deleted) between two parsed Parquet frames of ``dataset``."""
    keys = list(dataset.primary_key)
    values = [c.name for c in dataset.columns if c.name not in keys]
    old_scan, new_scan = pl.scan_parquet(old), pl.scan_parquet(new)
    rows = max(old_scan.select(pl.len()).collect().item(), new_scan.select(pl.len()).collect().item())
    partitions = max(1, math.ceil(rows / PARTITION_ROWS))

    def hashed(scan: pl.LazyFrame, part: int) -> pl.LazyFrame:
        if partitions > 1:
            scan = scan.filter(pl.struct(keys).hash(seed=0) % partitions == part)
        return scan.select(*keys, pl.struct(values).hash(seed=0).alias(ROW_HASH))

    inserted = changed = deleted = 0
    for part in range(partitions):
        joined = hashed(old_scan, part).join(hashed(new_scan, part), on=keys, how="full", coalesce=True, suffix="_new")
        old_hash, new_hash = pl.col(ROW_HASH), pl.col(f"{ROW_HASH}_new")
        counts = joined.select(
            inserted=old_hash.is_null().sum(),
            deleted=new_hash.is_null().sum(),
            changed=(old_hash != new_hash).sum(),
        ).collect(engine="streaming")
        inserted += counts["inserted"].item()
        changed += counts["changed"].item()
        deleted += counts["deleted"].item()
    return inserted, changed, deleted


def measure(old_dir: Path, new_dir: Path) -> list[FileChurn]:
    """The churn of every catalog file present in both folders, in catalog order.

    Raises FileNotFoundError when a folder is missing or the two share no IMDb file; a file that cannot be parsed
    raises ``parse.ParseError``.
    """
    for folder in (old_dir, new_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
    datasets = [d for d in DATASETS if (old_dir / d.file_name).is_file() and (new_dir / d.file_name).is_file()]
    if not datasets:
        raise FileNotFoundError(f"{old_dir} and {new_dir} have no IMDb .tsv.gz file in common")
    results = []
    with tempfile.TemporaryDirectory(prefix="imdb-churn-") as scratch:
        for dataset in datasets:
            parsed = {}
            for side, folder in (("old", old_dir), ("new", new_dir)):
                parquet = Path(scratch) / f"{side}.{dataset.file_stem}.parquet"
                result = parse_file(
                    dataset,
                    folder / dataset.file_name,
                    parquet,
                    Path(scratch) / f"{side}.{dataset.file_stem}.rejects.tsv",
                    source_sha256="",
                    max_reject_fraction=1.0,
                )
                parsed[side] = (parquet, result)
            (old_parquet, old), (new_parquet, new) = parsed["old"], parsed["new"]
            inserted, changed, deleted = compare_frames(dataset, old_parquet, new_parquet)
            results.append(
                FileChurn(dataset.file_stem, old.rows, new.rows, inserted, changed, deleted, old.rejects, new.rejects)
            )
            for parquet, _ in parsed.values():
                parquet.unlink()
    return results


def table(results: list[FileChurn]) -> str:
    """The churn as aligned text, one line per file."""
    header = ("file", "old rows", "new rows", "inserted", "changed", "deleted", "share")
    lines = [
        (
            r.file,
            *(f"{n:,}" for n in (r.old_rows, r.new_rows, r.inserted, r.changed, r.deleted)),
            f"{r.share_changed:.3%}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    aligned = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *lines]
    ]
    return "\n".join(aligned)
