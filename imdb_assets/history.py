"""The ratings history: every change of a title's rating and votes, release by release, kept forever.

``imdb.title_ratings_history`` is append-only: each load of ``imdb.title_ratings`` (a full load or a diff) adds, in
the transaction that changes the table, one row per title whose rating or votes changed, valid from the release's
date; a title that lost its rating gets a row of NULLs. No refresh path deletes or updates a row of an earlier
release (a release republished the same day replaces that day's row). A row is valid until the title's next row;
``valid_to`` is derived, never stored, so that nothing is rewritten.
"""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg import sql

from imdb_assets.catalog import SCHEMA

HISTORY_TABLE = "title_ratings_history"
RATINGS_TABLE = "title_ratings"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.{HISTORY_TABLE} (
    tconst text COLLATE "C" NOT NULL,
    valid_from date NOT NULL,
    average_rating numeric(3,1),
    num_votes integer,
    PRIMARY KEY (tconst, valid_from)
)
"""
HISTORY_COMMENT = (
    "Every change of a title's rating and votes, one row per title and release date, kept forever; a row of NULLs: "
    "the title lost its rating. Valid until the title's next row."
)
COLUMN_COMMENTS = {
    "tconst": "Title id.",
    "valid_from": "Date of the release from which the values hold.",
    "average_rating": "Weighted average of user ratings; NULL when the title had no rating.",
    "num_votes": "Number of votes; NULL when the title had no rating.",
}
COLUMN_TYPES = ("text", "date", "numeric(3,1)", "integer")


def ensure_table(conn: psycopg.Connection) -> None:
    """Create the history table (with its comments) if it does not exist; never touch an existing one."""
    if conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{HISTORY_TABLE}",)).fetchone() not in (None, (None,)):
        return
    table = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(HISTORY_TABLE))
    conn.execute(_CREATE)
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(HISTORY_COMMENT)))
    for column, comment in COLUMN_COMMENTS.items():
        target = sql.SQL("{}.{}").format(table, sql.Identifier(column))
        conn.execute(sql.SQL("COMMENT ON COLUMN {} IS {}").format(target, sql.Literal(comment)))


_TABLE = f"{SCHEMA}.{HISTORY_TABLE}"
_ON_CONFLICT = """ON CONFLICT (tconst, valid_from) DO UPDATE
SET average_rating = excluded.average_rating, num_votes = excluded.num_votes"""


def append_from_table_sql(day: date) -> str:
    """After ``imdb.title_ratings`` took a release of ``day``: append the rows that differ from each title's latest
    history row (a title rated now whose values moved, or that had none; a title unrated now whose latest row still
    has values). What a full load runs, which has no diff to go by."""
    return (
        sql.SQL(f"""
WITH latest AS (
    SELECT DISTINCT ON (tconst) tconst, average_rating, num_votes FROM {_TABLE} ORDER BY tconst, valid_from DESC
)
INSERT INTO {_TABLE} (tconst, valid_from, average_rating, num_votes)
SELECT coalesce(r.tconst, l.tconst), {{day}}, r.average_rating, r.num_votes
FROM {SCHEMA}.{RATINGS_TABLE} r FULL JOIN latest l ON l.tconst = r.tconst
WHERE (r.tconst IS NULL AND l.num_votes IS NOT NULL)
   OR (r.tconst IS NOT NULL AND (l.tconst IS NULL
       OR (r.average_rating, r.num_votes) IS DISTINCT FROM (l.average_rating, l.num_votes)))
{_ON_CONFLICT}""")
        .format(day=sql.Literal(day))
        .as_string(None)
    )


def append_from_diff_sql(day: date, rows: str, deleted: str) -> str:
    """The diff's own rows as history: ``rows`` (a table of the inserted and changed rows of title_ratings) and
    ``deleted`` (of the deleted keys), valid from ``day``. Exact when the history's latest rows are the table's
    state before the diff, which every load keeps so."""
    return (
        sql.SQL(f"""
INSERT INTO {_TABLE} (tconst, valid_from, average_rating, num_votes)
SELECT tconst, {{day}}, average_rating, num_votes FROM {rows}
UNION ALL
SELECT tconst, {{day}}, NULL, NULL FROM {deleted}
{_ON_CONFLICT}""")
        .format(day=sql.Literal(day))
        .as_string(None)
    )


IS_EMPTY_SQL = f"SELECT NOT EXISTS (SELECT FROM {_TABLE})"
