"""A release applied as a diff: only the rows that changed are written to ``imdb.<table>``, in one transaction.

The diff (``imdb_assets.diff``) is sent by ADBC into two temporary tables, the changed rows and the deleted keys;
then, in the same transaction, the deleted keys' rows are deleted, the changed rows upserted by primary key, the
record of loads moved to the new release, each changed key written to the change log, and for title.ratings the
ratings history appended. Readers see the old release or the new one, never a mix; the table is the same table,
so its indexes, grants, comments, owner and the views built on it are untouched. A failure anywhere, a connection
killed included, rolls it all back.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from imdb_assets import history
from imdb_assets.catalog import SCHEMA, Dataset
from imdb_assets.diff import CHANGE, DELETE, FrameDiff
from imdb_assets.load.ddl import CHANGE_LOG, META_SCHEMA, column_sql, create_table_sql, qualified
from imdb_assets.load.ingest import ADBC_OPTIONS, BATCH_ROWS

ROWS_TABLE, DELETED_TABLE = "imdb_diff_rows", "imdb_diff_deleted"


def _statements(dataset: Dataset, diff: FrameDiff, day: date, source: tuple[str, str | None]) -> list[str]:
    """What the transaction runs once the temporary tables are filled."""
    table = qualified(SCHEMA, dataset.table)
    keys = list(dataset.primary_key)
    values = [c.name for c in dataset.columns if c.name not in keys]
    columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in dataset.columns)
    rows, deleted = qualified("pg_temp", ROWS_TABLE), qualified("pg_temp", DELETED_TABLE)
    as_text = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in keys)
    key_array = sql.SQL("ARRAY[{}]").format(as_text)
    statements = [
        sql.SQL("DELETE FROM {} t USING {} d WHERE {}").format(
            table,
            deleted,
            sql.SQL(" AND ").join(sql.SQL("t.{0} = d.{0}").format(sql.Identifier(k)) for k in keys),
        ),
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO UPDATE SET {}").format(
            table,
            columns,
            columns,
            rows,
            sql.SQL(", ").join(map(sql.Identifier, keys)),
            sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(v)) for v in values),
        ),
        sql.SQL(
            "UPDATE {} SET source_sha256 = {}, source_last_modified = {}, rows = {}, loaded_at = now() "
            "WHERE table_name = {}"
        ).format(
            qualified(META_SCHEMA, "loads"),
            sql.Literal(source[0]),
            sql.Literal(source[1]),
            sql.Literal(diff.new_rows),
            sql.Literal(dataset.table),
        ),
        sql.SQL(
            "INSERT INTO {log} (release_date, table_name, key, change) "
            "SELECT {day}, {name}, {key}, {change} FROM {rows} "
            "UNION ALL SELECT {day}, {name}, {key}, {delete} FROM {deleted}"
        ).format(
            log=qualified(META_SCHEMA, CHANGE_LOG),
            day=sql.Literal(day),
            name=sql.Literal(dataset.table),
            key=key_array,
            change=sql.Identifier(CHANGE),
            delete=sql.Literal(DELETE),
            rows=rows,
            deleted=deleted,
        ),
    ]
    return [statement.as_string(None) for statement in statements]


def apply_diff(
    url: str,
    dataset: Dataset,
    diff: FrameDiff,
    day: date,
    source: tuple[str, str | None],
    log: logging.Logger,
) -> None:
    """Write ``diff`` (with its rows and deleted keys in Parquet) to ``imdb.<table>`` in one transaction, as the
    release of ``day`` from ``source`` (its raw file's sha256 and Last-Modified)."""
    assert diff.rows_path is not None and diff.deleted_path is not None
    key_columns = ", ".join(column_sql(dataset, c) for c in dataset.columns if c.name in dataset.primary_key)
    with adbc.connect(url, db_kwargs=ADBC_OPTIONS) as conn, conn.cursor() as cur:
        # The DB-API connection is not in autocommit: everything below is one transaction, committed at the end.
        change_column = sql.SQL(", {} text NOT NULL").format(sql.Identifier(CHANGE))
        cur.execute(create_table_sql(dataset, "pg_temp", ROWS_TABLE, change_column).as_string(None) + " ON COMMIT DROP")
        cur.execute(f"CREATE TABLE pg_temp.{DELETED_TABLE} ({key_columns}) ON COMMIT DROP")
        for name, path in ((ROWS_TABLE, diff.rows_path), (DELETED_TABLE, diff.deleted_path)):
            cur.adbc_ingest(name, _reader(path), mode="append", temporary=True)
        for statement in _statements(dataset, diff, day, source):
            cur.execute(statement)
        if dataset.table == history.RATINGS_TABLE:
            cur.execute(history.IS_EMPTY_SQL)
            (empty,) = cur.fetchone() or (True,)
            # An empty history (the platform upgraded to one) takes the whole table as of this release.
            cur.execute(
                history.append_from_table_sql(day)
                if empty
                else history.append_from_diff_sql(day, f"pg_temp.{ROWS_TABLE}", f"pg_temp.{DELETED_TABLE}")
            )
        conn.commit()
    log.info(
        f"{SCHEMA}.{dataset.table}: release of {day} applied as a diff: {diff.inserted:,} inserted, "
        f"{diff.changed:,} changed, {diff.deleted:,} deleted ({diff.share:.3%} of {diff.old_rows:,} rows)"
    )


def _reader(path: Path) -> pa.RecordBatchReader:
    source = pq.ParquetFile(path)
    return pa.RecordBatchReader.from_batches(source.schema_arrow, source.iter_batches(batch_size=BATCH_ROWS))
