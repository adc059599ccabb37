{#- Every pair either block found, once, with the people the two titles share (none for a genre-only pair). -#}

with blocks as (
    select tconst, recommended_tconst, shared_directors_writers, shared_cast
    from {{ ref('int_recommendation_people_pairs') }}
    union all
    select tconst, recommended_tconst, 0 as shared_directors_writers, 0 as shared_cast
    from {{ ref('int_recommendation_genre_pairs') }}
)

select
    tconst,
    recommended_tconst,
    sum(shared_directors_writers)::integer as shared_directors_writers,
    sum(shared_cast)::integer as shared_cast
from blocks
group by tconst, recommended_tconst
