{#- The unique index serves lookups by title and is what makes (tconst, genre) unique. -#}
{{ config(indexes=[{'columns': ['tconst', 'genre'], 'unique': True}, {'columns': ['genre']}]) }}

select
    basics.tconst,
    genre.name as genre,
    genre.position::integer as genre_position
from {{ ref('stg_imdb__title_basics') }} as basics
cross join lateral unnest(basics.genres) with ordinality as genre (name, position)
