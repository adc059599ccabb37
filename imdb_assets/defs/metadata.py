"""What a materialization shows about the PostgreSQL relation it built (its size, heap and indexes, and its first
rows) and about the data folder it lives in (its total, and the free space left).

Read back after the build, the same way for the loaded tables and the dbt models, so the asset page shows what is
really there rather than what the step meant to write, and a user sees the growth before the disk runs out.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema
from psycopg import sql

from imdb_assets import disk, storage
from imdb_assets.database import one_row

if TYPE_CHECKING:
    from imdb_assets.defs.resources import Warehouse

PREVIEW_ROWS = 5


def _cell(value: Any) -> str | int | float | bool | None:
    """A value as Dagster's table metadata can hold it: arrays and maps as JSON, numerics and dates as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal | date | datetime):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def relation_metadata(warehouse: Warehouse, relation: str) -> dict[str, Any]:
    """For ``schema.name``: ``heap_bytes``, ``index_bytes``, their sum ``table_bytes`` and ``table_size`` (tables
    and materialized views only), and ``preview``."""
    schema, name = relation.split(".")
    with warehouse.connect() as conn:
        kind = one_row(conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (relation,)).fetchone())[0]
        heap, indexes = disk.relation_sizes(conn, [relation])[relation]
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
    return {
        "heap_bytes": heap,
        "index_bytes": indexes,
        "table_bytes": heap + indexes,
        "table_size": MetadataValue.text(disk.readable_size(heap + indexes)),
        "preview": preview,
    }


def data_folder_metadata(data_dir: storage.Location) -> dict[str, Any]:
    """``data_folder_bytes`` (raw files, frames, rejects and, for the embedded server, the database) and, for a
    folder, ``data_disk_free_bytes``, as they are when the materialization is recorded."""
    size = storage.tree_bytes(data_dir)
    free = {"data_disk_free_bytes": disk.free_bytes(data_dir)} if isinstance(data_dir, Path) else {}
    return {"data_folder_bytes": size, "data_folder_size": MetadataValue.text(disk.readable_size(size)), **free}
