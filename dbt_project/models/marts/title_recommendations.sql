{{ config(indexes=[{'columns': ['tconst', 'rank'], 'unique': True}]) }}

{#-
For each title with enough votes, its ten most similar titles. Pairs are never enumerated title x title: the
candidates come from two blocks, titles sharing people (int_recommendation_people_pairs) and the most-voted titles
of the same genres (int_recommendation_genre_pairs), so work is linear in the eligible titles. Each candidate's
score and its components come from int_recommendation_scores; ties go to the title with more votes, then the
smaller id.
-#}

with ranked as (
    select
        *,
        row_number() over (
            partition by tconst order by score desc, recommended_num_votes desc, recommended_tconst asc
        ) as rank
    from {{ ref('int_recommendation_scores') }}
)

select
    tconst,
    rank::integer as rank,
    recommended_tconst,
    recommended_title,
    score,
    content_score,
    quality_score,
    shared_genres,
    genre_similarity,
    shared_directors_writers,
    shared_cast,
    recommended_average_rating,
    recommended_num_votes
from ranked
where rank <= 10
