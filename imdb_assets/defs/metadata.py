"""What a materialization shows about the PostgreSQL relation it built: its size and its first rows.

Read back from the database after the build, the same way for the loaded tables and the dbt models, so the asset
page shows what is really there rather than what the step meant to write.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema
from psycopg import sql

from imdb_assets.database import one_row

if TYPE_CHECKING:
    from imdb_assets.defs.resources import Warehouse

PREVIEW_ROWS = 5
# A partitioned table's size is its partitions', with their indexes.
_KIND_AND_SIZE = """
SELECT relkind,
       CASE relkind WHEN 'p' THEN (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(oid))::bigint
                    ELSE pg_total_relation_size(oid) END
FROM pg_class WHERE oid = %s::regclass
"""


def _cell(value: Any) -> str | int | float | bool | None:
    """A value as Dagster's table metadata can hold it: arrays and maps as JSON, numerics and dates as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal | date | datetime):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def readable_size(size: int) -> str:
    """Bytes as a person reads them: 950 B, 32.8 kB, 1.4 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size} B"


def relation_metadata(warehouse: Warehouse, relation: str) -> dict[str, Any]:
    """``table_bytes`` and ``table_size`` (tables and materialized views only) and ``preview``, for ``schema.name``."""
    schema, name = relation.split(".")
    with warehouse.connect() as conn:
        kind, size = one_row(conn.execute(_KIND_AND_SIZE, (relation,)).fetchone())
        cursor = conn.execute(
            sql.SQL("SELECT * FROM {} LIMIT {}").format(sql.Identifier(schema, name), sql.Literal(PREVIEW_ROWS))
        )
        columns = [TableColumn(c.name, c.type_display) for c in cursor.description or ()]  # a SELECT has one
        rows = cursor.fetchall()
    preview = MetadataValue.table(
        records=[TableRecord({c.name: _cell(v) for c, v in zip(columns, row, strict=True)}) for row in rows],
        schema=TableSchema(columns=columns),
    )
    if kind == "v":
        return {"preview": preview}
    return {"table_bytes": size, "table_size": MetadataValue.text(readable_size(size)), "preview": preview}
