"""The API's SQL. PostgreSQL builds each response's JSON itself, so an answer costs one round trip and no
conversion in Python; list endpoints fetch one row per item (its JSON and its sort key) to page by key."""

from __future__ import annotations

PERSON_REFS = """(SELECT coalesce(json_agg(json_build_object('nconst', n.nconst, 'name', n.primary_name)
                  ORDER BY credit.position), '[]')
        FROM unnest({column}) WITH ORDINALITY AS credit (nconst, position)
        JOIN imdb.name_basics n ON n.nconst = credit.nconst)"""

TITLE_FIELDS = """'tconst', t.tconst, 'title_type', t.title_type, 'primary_title', t.primary_title,
    'original_title', t.original_title, 'is_adult', t.is_adult, 'start_year', t.start_year, 'end_year', t.end_year,
    'runtime_minutes', t.runtime_minutes, 'genres', t.genres,
    'rating', CASE WHEN t.num_votes IS NULL THEN NULL
                   ELSE json_build_object('average', t.average_rating, 'votes', t.num_votes) END"""
TITLE_ITEM = f"json_build_object({TITLE_FIELDS})"

TITLE = f"""SELECT json_build_object({TITLE_FIELDS},
    'directors', {PERSON_REFS.format(column="crew.directors")},
    'writers', {PERSON_REFS.format(column="crew.writers")},
    'episode', CASE WHEN t.series_tconst IS NULL THEN NULL ELSE json_build_object(
        'series_tconst', t.series_tconst, 'series_title', t.series_title,
        'season', t.season_number, 'episode', t.episode_number) END)::text
FROM imdb_marts.titles t LEFT JOIN imdb.title_crew crew ON crew.tconst = t.tconst
WHERE t.tconst = %s"""

# /v1/titles: the sort key is never NULL (a missing rating or year sorts as 0), pages go down (key, tconst), and an
# index of titles on (key, tconst) serves each sort (dbt_project/models/marts/titles.sql): a page reads its rows
# and stops. The first page has no cursor condition, so that the planner never has to prove one away.
TITLE_SORT_KEYS = {
    "votes": ("coalesce(t.num_votes, 0)", "integer"),
    "rating": ("coalesce(t.average_rating, 0)", "numeric"),
    "year": ("coalesce(t.start_year, 0)", "integer"),
}
TITLES_PAGE = """SELECT {item}::text, {key}, t.tconst FROM imdb_marts.titles t
WHERE (%(type)s::text IS NULL OR t.title_type = %(type)s)
  AND (%(genre)s::text IS NULL OR t.genres @> ARRAY[%(genre)s::text])
  AND (%(year_from)s::int IS NULL OR t.start_year >= %(year_from)s)
  AND (%(year_to)s::int IS NULL OR t.start_year <= %(year_to)s)
  AND (%(min_votes)s::int IS NULL OR t.num_votes >= %(min_votes)s)
  {after}
ORDER BY {key} DESC, t.tconst DESC
LIMIT %(fetch)s"""
AFTER_CURSOR = "AND ({key}, t.tconst) < (%(after_key)s::{type}, %(after_tconst)s::text)"


def titles_page(sort: str, after: bool) -> str:
    key, key_type = TITLE_SORT_KEYS[sort]
    condition = AFTER_CURSOR.format(key=key, type=key_type) if after else ""
    return TITLES_PAGE.format(item=TITLE_ITEM, key=key, after=condition)


TITLE_EXISTS = "SELECT t.title_type FROM imdb_marts.titles t WHERE t.tconst = %s"

CREDITS = """SELECT json_build_object(
    'nconst', tp.nconst, 'name', n.primary_name, 'category', tp.category, 'billing_order', tp.billing_order,
    'job', p.job, 'characters', p.characters, 'in_principals', tp.in_principals, 'in_crew', tp.in_crew)::text
FROM imdb_marts.title_people tp
JOIN imdb.name_basics n ON n.nconst = tp.nconst
LEFT JOIN imdb.title_principals p ON p.tconst = tp.tconst AND p.ordering = tp.billing_order
WHERE tp.tconst = %s AND (%s::text IS NULL OR tp.category = %s)
ORDER BY tp.billing_order NULLS LAST, tp.category, tp.nconst"""

AKAS = """SELECT json_build_object(
    'ordering', a.ordering, 'title', a.title, 'region', a.region, 'language', a.language,
    'types', coalesce(a.types, '{}'), 'attributes', coalesce(a.attributes, '{}'),
    'is_original_title', a.is_original_title)::text
FROM imdb.title_akas a WHERE a.title_id = %s ORDER BY a.ordering"""

SIMILAR = """SELECT json_build_object(
    'rank', r.rank, 'tconst', r.recommended_tconst, 'primary_title', t.primary_title, 'title_type', t.title_type,
    'start_year', t.start_year, 'score', r.score, 'content_score', r.content_score, 'quality_score', r.quality_score,
    'shared_genres', r.shared_genres, 'genre_similarity', r.genre_similarity,
    'shared_directors_writers', r.shared_directors_writers, 'shared_cast', r.shared_cast)::text
FROM imdb_marts.title_recommendations r JOIN imdb_marts.titles t ON t.tconst = r.recommended_tconst
WHERE r.tconst = %s ORDER BY r.rank"""

EPISODES = """SELECT json_build_object(
    'tconst', e.episode_tconst, 'title', e.episode_title, 'season', e.season_number, 'episode', e.episode_number,
    'start_year', e.start_year, 'average_rating', e.average_rating, 'num_votes', e.num_votes)::text
FROM imdb_marts.series_episodes e
WHERE e.series_tconst = %s AND (%s::int IS NULL OR e.season_number = %s)
ORDER BY e.season_number NULLS LAST, e.episode_number NULLS LAST, e.episode_tconst"""

# A title's ratings history in date order, paged up by date; each row holds until the title's next one, whatever
# the page it falls on.
RATINGS_HISTORY = """SELECT json_build_object(
    'valid_from', h.valid_from, 'valid_to', h.valid_to, 'average_rating', h.average_rating,
    'num_votes', h.num_votes)::text,
    h.valid_from::text
FROM (SELECT h.*, lead(h.valid_from) OVER (ORDER BY h.valid_from) AS valid_to
      FROM imdb.title_ratings_history h WHERE h.tconst = %(tconst)s) AS h
WHERE %(after)s::date IS NULL OR h.valid_from > %(after)s::date
ORDER BY h.valid_from
LIMIT %(fetch)s"""

PERSON = """SELECT json_build_object(
    'nconst', p.nconst, 'primary_name', p.primary_name, 'birth_year', p.birth_year, 'death_year', p.death_year,
    'professions', p.professions,
    'known_for', (SELECT coalesce(json_agg(json_build_object('tconst', k.tconst, 'primary_title', k.title)
                                  ORDER BY k.position), '[]')
                  FROM unnest(p.known_for_tconsts, p.known_for_titles) WITH ORDINALITY AS k (tconst, title, position)),
    'credits_by_category', p.credits_by_category, 'total_credits', p.total_credits,
    'first_credited_year', p.first_credited_year, 'last_credited_year', p.last_credited_year)::text
FROM imdb_marts.people p WHERE p.nconst = %s"""

PERSON_EXISTS = "SELECT 1 FROM imdb_marts.people WHERE nconst = %s"

# A person's credits, newest first, paged down (year, tconst, category).
FILMOGRAPHY = """SELECT json_build_object(
    'tconst', tp.tconst, 'primary_title', t.primary_title, 'title_type', t.title_type, 'start_year', t.start_year,
    'category', tp.category, 'billing_order', tp.billing_order, 'average_rating', t.average_rating,
    'num_votes', t.num_votes)::text,
    coalesce(t.start_year, 0), tp.tconst, tp.category
FROM imdb_marts.title_people tp JOIN imdb_marts.titles t ON t.tconst = tp.tconst
WHERE tp.nconst = %(nconst)s
  AND (%(after_year)s::int IS NULL
       OR (coalesce(t.start_year, 0), tp.tconst, tp.category) < (%(after_year)s, %(after_tconst)s, %(after_category)s))
ORDER BY coalesce(t.start_year, 0) DESC, tp.tconst DESC, tp.category DESC
LIMIT %(fetch)s"""

# Search: every word must match, the last one as a prefix; with no match, any word. The first SEARCH_CANDIDATES
# matches in storage order (most voted or credited first) are ranked by text weight (a primary title beats an
# aka) times the log of the votes or credits, so a word found in millions of titles costs no more than a rare one.
# Titles are searched among rated ones first (a partial index, a fraction of the titles): when that fills the page,
# the unrated many are not read.
SEARCH_CANDIDATES = 500
SEARCH_TITLES_TEMPLATE = """SELECT json_build_object(
    'tconst', s.tconst, 'primary_title', s.primary_title, 'title_type', s.title_type, 'start_year', s.start_year,
    'num_votes', s.num_votes, 'rank', round(s.rank::numeric, 4))::text
FROM (
    SELECT s.*, ts_rank(s.document, query) * ln(2 + coalesce(s.num_votes, 0)) AS rank
    FROM to_tsquery('simple', imdb_marts.search_text(%(query)s)) AS query,
         LATERAL (SELECT * FROM imdb_marts.title_search s WHERE s.document @@ query {rated}
                  LIMIT {candidates}) AS s
) AS s
ORDER BY s.rank DESC, s.tconst
LIMIT %(limit)s"""
SEARCH_RATED_TITLES = SEARCH_TITLES_TEMPLATE.format(rated="AND s.num_votes IS NOT NULL", candidates=SEARCH_CANDIDATES)
SEARCH_TITLES = SEARCH_TITLES_TEMPLATE.format(rated="", candidates=SEARCH_CANDIDATES)

SEARCH_NAMES = f"""SELECT json_build_object(
    'nconst', s.nconst, 'primary_name', s.primary_name, 'professions', s.professions,
    'known_for_titles', s.known_for_titles, 'total_credits', s.total_credits, 'rank', round(s.rank::numeric, 4))::text
FROM (
    SELECT s.*, ts_rank(s.document, query) * ln(2 + s.total_credits) AS rank
    FROM to_tsquery('simple', imdb_marts.search_text(%(query)s)) AS query,
         LATERAL (SELECT * FROM imdb_marts.name_search s WHERE s.document @@ query LIMIT {SEARCH_CANDIDATES}) AS s
) AS s
ORDER BY s.rank DESC, s.nconst
LIMIT %(limit)s"""

# Where the server has pg_trgm (in schema {trgm}), a query nothing matches word for word is tried for similar names.
TRIGRAM_SCHEMA = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
SIMILAR_TITLES = """SELECT json_build_object(
    'tconst', s.tconst, 'primary_title', s.primary_title, 'title_type', s.title_type, 'start_year', s.start_year,
    'num_votes', s.num_votes, 'rank', round(s.rank::numeric, 4))::text
FROM (
    SELECT s.*, {trgm}.similarity(imdb_marts.search_text(s.primary_title), imdb_marts.search_text(%(text)s)) AS rank
    FROM imdb_marts.title_search s
    WHERE imdb_marts.search_text(s.primary_title) OPERATOR({trgm}.%%) imdb_marts.search_text(%(text)s)
) AS s
ORDER BY s.rank DESC, s.num_votes DESC NULLS LAST, s.tconst
LIMIT %(limit)s"""
SIMILAR_NAMES = """SELECT json_build_object(
    'nconst', s.nconst, 'primary_name', s.primary_name, 'professions', s.professions,
    'known_for_titles', s.known_for_titles, 'total_credits', s.total_credits, 'rank', round(s.rank::numeric, 4))::text
FROM (
    SELECT s.*, {trgm}.similarity(imdb_marts.search_text(s.primary_name), imdb_marts.search_text(%(text)s)) AS rank
    FROM imdb_marts.name_search s
    WHERE imdb_marts.search_text(s.primary_name) OPERATOR({trgm}.%%) imdb_marts.search_text(%(text)s)
) AS s
ORDER BY s.rank DESC, s.total_credits DESC, s.nconst
LIMIT %(limit)s"""

TOP_CHART = f"""SELECT {TITLE_ITEM}::text FROM imdb_marts.titles t
WHERE t.num_votes >= %(min_votes)s AND t.average_rating IS NOT NULL AND t.title_type = %(type)s
  AND (%(genre)s::text IS NULL OR t.genres @> ARRAY[%(genre)s::text])
ORDER BY t.average_rating DESC, t.num_votes DESC, t.tconst
LIMIT %(limit)s"""

# /v1/charts/trending: one chart of title_trending_ranks, paged up by rank. A NULL type or genre is the chart of all,
# '' here as in the mart's index on (window_days, coalesce(title_type, ''), coalesce(genre, ''), rank), which then
# reads the page in rank order (dbt_project/models/marts/title_trending_ranks.sql).
TRENDING_PAGE = """SELECT json_build_object(
    'rank', r.rank, 'tconst', r.tconst, 'primary_title', t.primary_title, 'title_type', t.title_type,
    'start_year', t.start_year, 'genres', t.genres, 'average_rating', t.average_rating, 'num_votes', t.num_votes,
    'votes_gained', r.votes_gained, 'rating_change', t.rating_change_{days}d)::text,
    r.rank
FROM imdb_marts.title_trending_ranks r JOIN imdb_marts.title_rating_trends t ON t.tconst = r.tconst
WHERE r.window_days = %(days)s AND coalesce(r.title_type, '') = %(type)s AND coalesce(r.genre, '') = %(genre)s
  AND r.num_votes >= %(min_votes)s AND r.rank > %(after_rank)s
ORDER BY r.rank
LIMIT %(fetch)s"""


def trending_page(days: int) -> str:
    """The chart of ``days``: 1, 7 or 30, which title_rating_trends has a rating_change column for."""
    return TRENDING_PAGE.format(days=days)


GENRE_STATS = """SELECT json_build_object(
    'genre', g.genre, 'titles', sum(g.titles), 'rated_titles', sum(g.rated_titles), 'total_votes', sum(g.total_votes),
    'weighted_average_rating',
        round(sum(g.weighted_average_rating * g.total_votes) / nullif(sum(g.total_votes), 0), 2))::text
FROM imdb_marts.genre_year_stats g
WHERE (%(year_from)s::int IS NULL OR g.start_year >= %(year_from)s)
  AND (%(year_to)s::int IS NULL OR g.start_year <= %(year_to)s)
GROUP BY g.genre
ORDER BY sum(g.titles) DESC, g.genre"""

DATASETS = """SELECT table_name, rows, source_last_modified, loaded_at FROM imdb_meta.loads"""
# The heap and index bytes of every table of imdb and imdb_marts (a partitioned table's are its partitions': the tree
# lists it and them, and nothing for a plain table, hence the UNION), but for the relations dbt builds a mart into and
# keeps its old copy in while it swaps them.
DATASET_SIZES = """SELECT n.nspname, c.relname, sizes.heap, sizes.indexes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (SELECT sum(pg_table_size(relid))::bigint, sum(pg_indexes_size(relid))::bigint
                    FROM (SELECT relid FROM pg_partition_tree(c.oid) UNION SELECT c.oid::regclass) AS tree
                   ) AS sizes (heap, indexes)
WHERE n.nspname IN ('imdb', 'imdb_marts') AND c.relkind IN ('r', 'p') AND c.relname !~ '__dbt_(tmp|backup)$'
ORDER BY n.nspname, c.relname"""

# The release the data comes from (imdb_api/release.py): each table's file and swap, and the marts' relations.
RELEASE_LOADS = """SELECT table_name, source_sha256, loaded_at, source_last_modified FROM imdb_meta.loads
ORDER BY table_name"""
MART_RELATIONS = """SELECT array_agg(c.oid::bigint ORDER BY c.oid) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'imdb_marts'"""
# An incremental mart changes in place (its oid stays): its watermark moves in the transaction of its build.
WATERMARKS_READABLE = (
    """SELECT coalesce(has_table_privilege(to_regclass('imdb_meta.model_watermarks'), 'SELECT'), false)"""
)
MART_WATERMARKS = (
    """SELECT array_agg((model, consumed_id, generation)::text ORDER BY model) FROM imdb_meta.model_watermarks"""
)

READY = """SELECT array_agg(name) FILTER (WHERE to_regclass(name) IS NULL) FROM unnest(%s::text[]) AS name"""
