{{ config(
    indexes=[{'columns': ['document'], 'type': 'gin'}, {'columns': ['tconst'], 'unique': True}],
    post_hook="{{ trigram_index('primary_title') }}",
) }}

-- One search document per title: its primary title (weight A), original title (B) and every aka (C), folded by
-- search_text() so that case and accents do not matter. Rows are stored most-voted first: the API ranks only the
-- first matches of a word found in many titles, and a bitmap scan returns them in this order.
with aka_texts as (
    select tconst, string_agg(distinct imdb_marts.search_text(title), ' ') as akas
    from {{ ref('stg_imdb__title_akas') }}
    group by tconst
)

select
    basics.tconst,
    basics.title_type,
    basics.primary_title,
    basics.start_year,
    ratings.num_votes,
    setweight(to_tsvector('simple', coalesce(imdb_marts.search_text(basics.primary_title), '')), 'A')
    || setweight(to_tsvector('simple', coalesce(imdb_marts.search_text(basics.original_title), '')), 'B')
    || setweight(to_tsvector('simple', coalesce(aka_texts.akas, '')), 'C') as document
from {{ ref('stg_imdb__title_basics') }} as basics
left join {{ ref('stg_imdb__title_ratings') }} as ratings on ratings.tconst = basics.tconst
left join aka_texts on aka_texts.tconst = basics.tconst
order by ratings.num_votes desc nulls last, basics.tconst
