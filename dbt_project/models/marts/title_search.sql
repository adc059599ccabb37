{{ config(
    materialized='incremental',
    incremental_strategy='touched_keys',
    unique_key='tconst',
    meta={
        'change_tables': ['title_basics', 'title_ratings', 'title_akas'],
        'change_parents': ['int_title_aka_texts'],
    },
    pre_hook="{{ create_touched_keys(touched_title_search()) }}",
    indexes=[{'columns': ['document'], 'type': 'gin'}, {'columns': ['tconst'], 'unique': True}],
    post_hook=[
        "{{ on_full_build('create index on ' ~ this ~ ' using gin (document) where num_votes is not null') }}",
        "{{ on_full_build(trigram_index('primary_title')) }}",
    ],
) }}
{{ follow_change_log() }}

-- One search document per title: its primary title (weight A), and its original title and every aka (weight B), folded
-- by search_text() so that case and accents do not matter. Rows are stored most-voted first: the API ranks only the
-- first matches of a word found in many titles, and a bitmap scan returns them in this order. The partial index
-- of the rated titles lets the API search those first.
select
    basics.tconst,
    basics.title_type,
    basics.primary_title,
    basics.start_year,
    ratings.num_votes,
    setweight(to_tsvector('simple', coalesce(imdb_marts.search_text(basics.primary_title), '')), 'A')
    || setweight(
        to_tsvector('simple', concat_ws(' ', imdb_marts.search_text(basics.original_title), aka_texts.akas)), 'B'
    )
        as document
from {{ ref('stg_imdb__title_basics') }} as basics
left join {{ ref('stg_imdb__title_ratings') }} as ratings on ratings.tconst = basics.tconst
left join {{ ref('int_title_aka_texts') }} as aka_texts on aka_texts.tconst = basics.tconst
where {{ touched_only('basics.tconst') }}
order by ratings.num_votes desc nulls last, basics.tconst asc
