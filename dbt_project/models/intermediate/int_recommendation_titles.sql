{#-
The titles that get, and can be, recommendations: enough votes, and not an episode. quality_score belongs to the
recommended title alone, so it is computed here once per title rather than once per candidate pair.

A table, not inlined: the credits, the genre block and the scores each read it, and as one query's CTE PostgreSQL
would plan them all without statistics of it.
-#}

{{ config(materialized='table') }}

select
    tconst,
    primary_title,
    genres,
    average_rating,
    num_votes,
    round((average_rating / 10) * least(1, ln(1 + num_votes) / ln(1 + 1000000))::numeric, 4) as quality_score
from {{ ref('titles') }}
where num_votes >= {{ var('recommendation_min_votes') }}
    and title_type <> 'tvEpisode'
