{#-
The titles that get, and can be, recommendations: enough votes, and not an episode. It reads the staging views, not
the titles mart, so that the layers stay in order (staging -> intermediate -> marts). quality_score belongs to the
recommended title alone, so it is computed here once per title rather than once per candidate pair.

A table, not inlined: the credits, the genre block and the scores each read it, and as one query's CTE PostgreSQL
would plan them all without statistics of it.
-#}

{{ config(materialized='table') }}

select
    basics.tconst,
    basics.primary_title,
    basics.genres,
    ratings.average_rating,
    ratings.num_votes,
    round((ratings.average_rating / 10) * least(1, ln(1 + ratings.num_votes) / ln(1 + 1000000))::numeric, 4)
        as quality_score
from {{ ref('stg_imdb__title_basics') }} as basics
inner join {{ ref('stg_imdb__title_ratings') }} as ratings on ratings.tconst = basics.tconst
where ratings.num_votes >= {{ var('recommendation_min_votes') }}
    and basics.title_type <> 'tvEpisode'
