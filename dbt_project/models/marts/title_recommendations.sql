{{ config(indexes=[{'columns': ['tconst', 'rank'], 'unique': True}]) }}

{#-
For each title with enough votes, its ten most similar titles. Pairs are never enumerated title x title: candidates
come from blocks, (1) titles sharing a director, writer or principal cast member, leaving out people credited on
more than `recommendation_max_titles_per_person` eligible titles (like stop words, they relate everything), and
(2) for each of a title's genres, the `recommendation_genre_candidates` most-voted titles of that genre. Work is
linear in the eligible titles times those bounds.

score = content_score * (0.8 + 0.2 * quality_score), where
  content_score = 0.40 * genre_similarity (Jaccard of the genre sets)
                + 0.35 * min(shared_directors_writers, 2) / 2
                + 0.25 * min(shared_cast, 4) / 4
  quality_score = rating / 10 * min(1, ln(1 + votes) / ln(1 + 10^6)), of the recommended title.
Ties go to the title with more votes, then the smaller id.
-#}

with eligible as (
    select tconst, primary_title, genres, average_rating, num_votes
    from {{ ref('titles') }}
    where num_votes >= {{ var('recommendation_min_votes') }}
        and title_type <> 'tvEpisode'
),

roles as (
    select distinct
        credit.tconst,
        credit.nconst,
        case when credit.category in ('director', 'writer') then 'crew' else 'cast' end as role
    from {{ ref('title_people') }} as credit
    inner join eligible on eligible.tconst = credit.tconst
    where credit.category in ('director', 'writer', 'actor', 'actress', 'self')
),

blocking_roles as (
    select nconst, role
    from roles
    group by nconst, role
    having count(*) <= {{ var('recommendation_max_titles_per_person') }}
),

shared_people as (
    select
        title.tconst,
        other.tconst as recommended_tconst,
        count(*) filter (where title.role = 'crew') as shared_directors_writers,
        count(*) filter (where title.role = 'cast') as shared_cast
    from roles as title
    inner join blocking_roles on blocking_roles.nconst = title.nconst and blocking_roles.role = title.role
    inner join roles as other
        on other.nconst = title.nconst and other.role = title.role and other.tconst <> title.tconst
    group by title.tconst, other.tconst
),

popular_in_genre as (
    select
        genres.genre,
        eligible.tconst,
        row_number() over (partition by genres.genre order by eligible.num_votes desc, eligible.tconst) as popularity
    from {{ ref('title_genres') }} as genres
    inner join eligible on eligible.tconst = genres.tconst
),

same_genre as (
    select distinct title.tconst, popular.tconst as recommended_tconst
    from {{ ref('title_genres') }} as title
    inner join eligible on eligible.tconst = title.tconst
    inner join popular_in_genre as popular
        on popular.genre = title.genre
        and popular.popularity <= {{ var('recommendation_genre_candidates') }}
        and popular.tconst <> title.tconst
),

candidates as (
    select
        tconst,
        recommended_tconst,
        sum(shared_directors_writers)::integer as shared_directors_writers,
        sum(shared_cast)::integer as shared_cast
    from (
        select tconst, recommended_tconst, shared_directors_writers, shared_cast from shared_people
        union all
        select tconst, recommended_tconst, 0, 0 from same_genre
    ) as blocks
    group by tconst, recommended_tconst
),

components as (
    select
        candidates.tconst,
        candidates.recommended_tconst,
        recommended.primary_title as recommended_title,
        recommended.average_rating as recommended_average_rating,
        recommended.num_votes as recommended_num_votes,
        genre_overlap.shared_genres,
        round(genre_overlap.shared_genres::numeric / nullif(genre_overlap.all_genres, 0), 4) as genre_similarity,
        candidates.shared_directors_writers,
        candidates.shared_cast,
        round(
            (recommended.average_rating / 10)
            * least(1, ln(1 + recommended.num_votes) / ln(1 + 1000000))::numeric,
            4
        ) as quality_score
    from candidates
    inner join eligible as title on title.tconst = candidates.tconst
    inner join eligible as recommended on recommended.tconst = candidates.recommended_tconst
    cross join lateral (
        select
            cardinality(array(select unnest(title.genres) intersect select unnest(recommended.genres)))
                as shared_genres,
            cardinality(array(select unnest(title.genres) union select unnest(recommended.genres))) as all_genres
    ) as genre_overlap
),

scored as (
    select
        *,
        round(
            0.40 * coalesce(genre_similarity, 0)
            + 0.35 * least(shared_directors_writers, 2) / 2.0
            + 0.25 * least(shared_cast, 4) / 4.0,
            4
        ) as content_score
    from components
),

with_score as (
    select *, round(content_score * (0.8 + 0.2 * quality_score), 6) as score
    from scored
),

ranked as (
    select
        *,
        row_number() over (
            partition by tconst order by score desc, recommended_num_votes desc, recommended_tconst
        ) as rank
    from with_score
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
