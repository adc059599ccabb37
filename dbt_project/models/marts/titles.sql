{{ config(indexes=[{'columns': ['tconst'], 'unique': True}]) }}

with names as (
    select nconst, primary_name from {{ ref('stg_imdb__name_basics') }}
),

directors as (
    select crew.tconst, array_agg(names.primary_name order by director.position) as director_names
    from {{ ref('stg_imdb__title_crew') }} as crew
    cross join lateral unnest(crew.directors) with ordinality as director (nconst, position)
    inner join names on names.nconst = director.nconst
    group by crew.tconst
),

writers as (
    select crew.tconst, array_agg(names.primary_name order by writer.position) as writer_names
    from {{ ref('stg_imdb__title_crew') }} as crew
    cross join lateral unnest(crew.writers) with ordinality as writer (nconst, position)
    inner join names on names.nconst = writer.nconst
    group by crew.tconst
)

select
    basics.tconst,
    basics.title_type,
    basics.primary_title,
    basics.original_title,
    basics.is_adult,
    basics.start_year,
    basics.end_year,
    basics.runtime_minutes,
    basics.genres,
    ratings.average_rating,
    ratings.num_votes,
    coalesce(directors.director_names, '{}'::text[]) as director_names,
    coalesce(writers.writer_names, '{}'::text[]) as writer_names,
    episode.series_tconst,
    series.primary_title as series_title,
    episode.season_number,
    episode.episode_number
from {{ ref('stg_imdb__title_basics') }} as basics
left join {{ ref('stg_imdb__title_ratings') }} as ratings on ratings.tconst = basics.tconst
left join directors on directors.tconst = basics.tconst
left join writers on writers.tconst = basics.tconst
left join {{ ref('stg_imdb__title_episode') }} as episode on episode.tconst = basics.tconst
left join {{ ref('stg_imdb__title_basics') }} as series on series.tconst = episode.series_tconst
