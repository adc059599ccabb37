{#-
Each candidate pair scored, every component a column:
  content_score = 0.40 * genre_similarity (Jaccard of the two genre sets)
                + 0.35 * min(shared_directors_writers, 2) / 2
                + 0.25 * min(shared_cast, 4) / 4
  score = content_score * (0.8 + 0.2 * quality_score), quality_score being the recommended title's.
The union of two genre sets is counted as |a| + |b| - |a and b|: a title's genres are distinct (title_genres'
uniqueness test guards it), and one lookup per pair costs far less than set operations on the two arrays.
-#}

with components as (
    select
        candidates.tconst,
        candidates.recommended_tconst,
        recommended.primary_title as recommended_title,
        recommended.average_rating as recommended_average_rating,
        recommended.num_votes as recommended_num_votes,
        genre_overlap.shared_genres,
        round(
            genre_overlap.shared_genres::numeric / nullif(
                coalesce(cardinality(title.genres), 0)
                + coalesce(cardinality(recommended.genres), 0)
                - genre_overlap.shared_genres,
                0
            ),
            4
        ) as genre_similarity,
        candidates.shared_directors_writers,
        candidates.shared_cast,
        recommended.quality_score
    from {{ ref('int_recommendation_candidates') }} as candidates
    inner join {{ ref('int_recommendation_titles') }} as title on title.tconst = candidates.tconst
    inner join {{ ref('int_recommendation_titles') }} as recommended
        on recommended.tconst = candidates.recommended_tconst
    cross join lateral (
        select count(*)::integer as shared_genres
        from unnest(title.genres) as genre
        where genre = any(recommended.genres)
    ) as genre_overlap
),

with_content_score as (
    select
        *,
        round(
            0.40 * coalesce(genre_similarity, 0)
            + 0.35 * least(shared_directors_writers, 2) / 2.0
            + 0.25 * least(shared_cast, 4) / 4.0,
            4
        ) as content_score
    from components
)

select
    *,
    round(content_score * (0.8 + 0.2 * quality_score), 6) as score
from with_content_score
