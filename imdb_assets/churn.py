"""How much of each IMDb file changed between two releases: rows inserted, changed and deleted, by primary key.

IMDb publishes full snapshots and no figures for how much of them changes per day, so this measures it: each file
of both releases is parsed as a load would parse it (``parse.parse_file``: quoting off, bad lines rejected, the first
of a repeated key kept) into a temporary Parquet frame, then the two frames are joined on the dataset's key and the
whole rows compared (``imdb_assets.diff``, which a load applying a release as a diff uses too).

    uv run imdb churn releases/2024-03-01 releases/2024-03-02 [--json]
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from imdb_assets.catalog import DATASETS
from imdb_assets.diff import diff_frames
from imdb_assets.parse import parse_file


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
            diff = diff_frames(dataset, old_parquet, new_parquet)
            results.append(
                FileChurn(
                    dataset.file_stem,
                    old.rows,
                    new.rows,
                    diff.inserted,
                    diff.changed,
                    diff.deleted,
                    old.rejects,
                    new.rejects,
                )
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
