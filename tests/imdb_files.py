"""Write IMDb-format files from rows a test spells out, so a test knows exactly what every mart must contain."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from imdb_assets.catalog import BY_STEM, LIST_SEPARATORS, Column, Kind


def _field(column: Column, value) -> str:
    if value is None:
        return "\\N"
    if column.kind is Kind.BOOL:
        return "1" if value else "0"
    if column.kind is Kind.JSON_LIST:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if column.is_list:
        return LIST_SEPARATORS[column.kind].join(value)
    return str(value)


def write_files(folder: Path, rows: dict[str, list[dict]]) -> Path:
    """One `<file_stem>.tsv.gz` per entry: header from the catalog, rows in key order, absent columns as `\\N`."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, records in rows.items():
        dataset = BY_STEM[stem]
        ordered = sorted(records, key=lambda r: tuple(str(r[k]) for k in dataset.primary_key))
        lines = [dataset.header] + [
            "\t".join(_field(c, record.get(c.name)) for c in dataset.columns) for record in ordered
        ]
        (folder / dataset.file_name).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return folder
