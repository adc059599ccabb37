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


# Rows that differ from each title's latest history row: a title rated now whose values moved (or that had none),
# or a title unrated now whose latest row still has values.
_APPEND_FROM_TABLE = f"""
WITH latest AS (
    SELECT DISTINCT ON (tconst) tconst, average_rating, num_votes
    FROM {SCHEMA}.{HISTORY_TABLE} ORDER BY tconst, valid_from DESC
)
INSERT INTO {SCHEMA}.{HISTORY_TABLE} (tconst, valid_from, average_rating, num_votes)
SELECT coalesce(r.tconst, l.tconst), %(day)s, r.average_rating, r.num_votes
FROM {SCHEMA}.{RATINGS_TABLE} r FULL JOIN latest l ON l.tconst = r.tconst
WHERE (r.tconst IS NULL AND l.num_votes IS NOT NULL)
   OR (r.tconst IS NOT NULL AND (l.tconst IS NULL
       OR (r.average_rating, r.num_votes) IS DISTINCT FROM (l.average_rating, l.num_votes)))
ON CONFLICT (tconst, valid_from) DO UPDATE
SET average_rating = excluded.average_rating, num_votes = excluded.num_votes
"""


def append_from_table(conn: psycopg.Connection, day: date) -> int:
    """In the caller's transaction, after ``imdb.title_ratings`` took a release of ``day``: append what differs
    from the history's latest rows. Returns the rows appended."""
    ensure_table(conn)
    return conn.execute(_APPEND_FROM_TABLE, {"day": day}).rowcount
