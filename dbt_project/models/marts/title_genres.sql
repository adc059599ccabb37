{{ config(indexes=[{'columns': ['genre']}]) }}

select
    basics.tconst,
    genre.name as genre,
    genre.position::integer as genre_position
from {{ ref('stg_imdb__title_basics') }} as basics
cross join lateral unnest(basics.genres) with ordinality as genre (name, position)
