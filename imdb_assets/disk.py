"""Disk space: what a refresh's step is about to write, checked against the free space before it writes anything,
and what the data folder and each relation hold.

A step that builds something new keeps the old copy until the new one is complete (a download beside the previous
file, a Parquet beside the previous frame, a table's partitions beside the old ones, a mart beside the old mart),
so its need is the size of what it builds, estimated from the last refresh's figures, times a safety factor that
covers PostgreSQL's temporary files (index builds, the marts' sorts and hash joins) and growth. A step refused
(`NotEnoughDisk`) has changed nothing, so the previous tables and marts stay as they were.

Only the data folder's disk is measured: on the embedded server it holds the database too; with ``DATABASE_URL``
the database's disk is the operator's, and only the raw files and frames are checked.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import psycopg

# A table's bytes (heap and indexes) per byte of its Parquet frame, for a first load with no table to go by: measured
# on generated files of 1M and 5M rows, 10.6 (name.basics) to 17.3 (title.principals), the same at both sizes
# (zstd-compressed frames against uncompressed rows with their headers and key indexes); the largest, rounded up, as
# the safety factor is not meant to cover a wrong ratio.
TABLE_BYTES_PER_PARQUET_BYTE = 18.0

# Each relation's heap (with its TOAST and maps) and index bytes: a partitioned table's are its partitions' summed
# (pg_partition_tree lists a partitioned table and its partitions, and nothing for a plain table, hence the UNION).
RELATION_SIZES = """
SELECT name, sum(pg_table_size(tree.relid))::bigint, sum(pg_indexes_size(tree.relid))::bigint
FROM unnest(%s::text[]) AS name
CROSS JOIN LATERAL (SELECT relid FROM pg_partition_tree(to_regclass(name)) UNION SELECT to_regclass(name)) AS tree
WHERE to_regclass(name) IS NOT NULL
GROUP BY name
"""


class NotEnoughDisk(RuntimeError):
    """A step's estimated need is more than its disk has free; the step was refused before it changed anything."""


def readable_size(size: int) -> str:
    """Bytes as a person reads them: 950 B, 32.8 kB, 1.4 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size} B"


def free_bytes(folder: Path) -> int:
    """Free bytes, for an unprivileged user, on the disk that holds ``folder`` (or would: its nearest ancestor)."""
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``, which other processes may be changing meanwhile (a file that vanishes
    while it is counted counts nothing)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def relation_sizes(conn: psycopg.Connection, relations: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(heap bytes, index bytes) of each existing relation of ``relations`` (``schema.name``)."""
    rows = conn.execute(RELATION_SIZES, (list(relations),)).fetchall()
    return {name: (heap, indexes) for name, heap, indexes in rows}


def table_estimate(rows: int, last_rows: int | None, last_bytes: int | None, parquet_bytes: int) -> int:
    """Bytes of a table about to be loaded with ``rows``: the current table's bytes per row when there is one (the
    last load's figures), else its Parquet frame's bytes times `TABLE_BYTES_PER_PARQUET_BYTE`."""
    if last_rows and last_bytes:
        return math.ceil(rows * last_bytes / last_rows)
    return math.ceil(parquet_bytes * TABLE_BYTES_PER_PARQUET_BYTE)


def refuse_without_room(what: str, need: Mapping[str, int], folder: Path, safety_factor: float) -> None:
    """Raise `NotEnoughDisk` when ``need`` (bytes by part) times ``safety_factor`` is more than the free space on
    ``folder``'s disk; a factor of 0 checks nothing."""
    if safety_factor == 0:
        return
    total = math.ceil(sum(need.values()) * safety_factor)
    free = free_bytes(folder)
    if total > free:
        parts = ", ".join(f"{part} {readable_size(size)}" for part, size in need.items())
        raise NotEnoughDisk(
            f"{what} needs about {readable_size(total)} of disk ({parts}, times {safety_factor:g} for temporary "
            f"files and growth) and the disk of {folder} has {readable_size(free)} free: refused before changing "
            "anything, the previous data stays. Free some space, or set IMDB_DISK_SAFETY_FACTOR (0 skips the check)."
        )
