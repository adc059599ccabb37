{#-
The second block: each eligible title paired with the `recommendation_genre_candidates` most-voted eligible titles
of each of its genres (ties to the smaller id), so a title sharing no one still gets candidates.
-#}

with eligible_genres as (
    select genres.tconst, genres.genre, eligible.num_votes
    from {{ ref('title_genres') }} as genres
    inner join {{ ref('int_recommendation_titles') }} as eligible on eligible.tconst = genres.tconst
),

popular_in_genre as (
    select
        genre,
        tconst,
        row_number() over (partition by genre order by num_votes desc, tconst asc) as popularity
    from eligible_genres
)

select distinct
    title.tconst,
    popular.tconst as recommended_tconst
from eligible_genres as title
inner join popular_in_genre as popular
    on popular.genre = title.genre
    and popular.popularity <= {{ var('recommendation_genre_candidates') }}
    and popular.tconst <> title.tconst
