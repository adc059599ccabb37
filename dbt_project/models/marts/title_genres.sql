{#- The unique index serves lookups by title and is what makes (tconst, genre) unique. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='touched_keys',
    unique_key='tconst',
    meta={'change_tables': ['title_basics'], 'change_parents': []},
    pre_hook="{{ create_touched_keys(changed_keys('title_basics')) }}",
    indexes=[{'columns': ['tconst', 'genre'], 'unique': True}, {'columns': ['genre']}],
) }}
{{ follow_change_log() }}

select
    basics.tconst,
    genre.name as genre,
    genre.position::integer as genre_position
from {{ ref('stg_imdb__title_basics') }} as basics
cross join lateral unnest(basics.genres) with ordinality as genre (name, position)
where {{ touched_only('basics.tconst') }}
