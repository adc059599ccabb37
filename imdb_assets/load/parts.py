"""Planning a load's parts: the frame cut into key ranges, one per connection, from its Parquet statistics.

Each part is a range of the first key column, cut at row groups' smallest keys so that a frame in key order (IMDb's
files are) gives each connection whole row groups, and carries a CHECK constraint equal to its range so that
attaching it as the partition of that range scans nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from imdb_assets.catalog import Dataset

MIN_PART_ROWS = 250_000  # below this, a partition's extra connection, DDL and ANALYZE cost more than they save


@dataclass(frozen=True)
class Part:
    """One connection's share of a load: the frame's rows whose first key column lies in [low, high) (None:
    unbounded), read from the row groups that can hold them, into a table of its own."""

    table: str
    low: str | None
    high: str | None
    row_groups: list[int]
    straddling: frozenset[int]  # row groups that also hold rows of other parts: their rows are filtered by key

    def bounds_sql(self) -> sql.Composed:
        low = sql.SQL("MINVALUE") if self.low is None else sql.Literal(self.low)
        high = sql.SQL("MAXVALUE") if self.high is None else sql.Literal(self.high)
        return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(low, high)

    def check_sql(self, key: str) -> sql.Composable:
        """A CHECK constraint equal to the range (bar NULL, which the key's NOT NULL excludes), by which attaching
        the table as the partition of that range proves it holds no other rows without reading them."""
        column = sql.Identifier(key)
        conditions = [sql.SQL("{} >= {}").format(column, sql.Literal(self.low))] if self.low is not None else []
        if self.high is not None:
            conditions.append(sql.SQL("{} < {}").format(column, sql.Literal(self.high)))
        if not conditions:
            return sql.SQL("")
        name = sql.Identifier(f"{self.table}_range")
        return sql.SQL(", CONSTRAINT {} CHECK ({})").format(name, sql.SQL(" AND ").join(conditions))

    def keeps(self, keys: pa.Array) -> pa.Array:
        """Which of a straddling row group's ``keys`` are this part's."""
        low = pa.scalar(self.low, keys.type) if self.low is not None else None
        high = pa.scalar(self.high, keys.type) if self.high is not None else None
        if low is not None and high is not None:
            return pc.and_(pc.greater_equal(keys, low), pc.less(keys, high))
        return pc.greater_equal(keys, low) if low is not None else pc.less(keys, high)


def plan_parts(
    dataset: Dataset, source: pq.ParquetFile, cores: int, prefix: str, min_rows: int = MIN_PART_ROWS
) -> list[Part]:
    """Key ranges for up to one connection per core, of even rows (at least ``min_rows`` each), cut at row
    groups' smallest keys: a frame in key order (IMDb's files are) gives each part whole row groups, bar the one
    key a cut may share. A frame in any other order loads just as correctly, slower: each part reads every row group
    that overlaps its range and keeps its own rows. Without min/max statistics, or too few rows to share, the load
    is one part, of every key. Parts are tables named ``<prefix>_<n>``."""
    meta = source.metadata
    whole = [Part(f"{prefix}_1", None, None, list(range(meta.num_row_groups)), frozenset())]
    parts = min(cores, meta.num_rows // min_rows, meta.num_row_groups)
    key = dataset.primary_key[0]
    groups = []  # (least key, greatest key, rows) of each row group
    for group in map(meta.row_group, range(meta.num_row_groups)):
        statistics = next(c.statistics for c in map(group.column, range(group.num_columns)) if c.path_in_schema == key)
        if statistics is None or not statistics.has_min_max:
            return whole
        groups.append((statistics.min, statistics.max, group.num_rows))
    cuts: list[Any] = []  # keys, of the key column's type
    seen = 0
    for least, _, rows in sorted(groups):  # a cut where a part's share of the rows is reached
        if len(cuts) < parts - 1 and seen + rows / 2 >= meta.num_rows * (len(cuts) + 1) / parts:
            cuts.append(least)
        seen += rows
    cuts = sorted(set(cuts) - {min(groups)[0]}) if cuts else []  # a cut at the least key would leave a part empty
    if not cuts:
        return whole
    planned = []
    for number, (low, high) in enumerate(zip([None, *cuts], [*cuts, None], strict=True), start=1):
        overlapping = [
            g
            for g, (least, most, _) in enumerate(groups)
            if (high is None or least < high) and (low is None or most >= low)
        ]
        straddling = frozenset(
            g
            for g in overlapping
            if (low is not None and groups[g][0] < low) or (high is not None and groups[g][1] >= high)
        )
        planned.append(Part(f"{prefix}_{number}", low, high, overlapping, straddling))
    return planned
