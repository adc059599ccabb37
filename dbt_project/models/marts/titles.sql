{#- Besides the key: one index per sort order of the API's /v1/titles pages, on the expression it sorts by. Rebuilt
    by title from the change log (macros/change_log.sql, touched_titles() in macros/touched_keys.sql). -#}
{{ config(
    materialized='incremental',
    incremental_strategy='touched_keys',
    unique_key='tconst',
    meta={
        'change_tables': ['title_basics', 'title_ratings', 'title_crew', 'title_episode', 'name_basics'],
        'change_parents': [],
    },
    pre_hook="{{ create_touched_keys(touched_titles()) }}",
    indexes=[
    {'columns': ['tconst'], 'unique': True},
    {'columns': ['(coalesce(num_votes, 0))', 'tconst']},
    {'columns': ['(coalesce(average_rating, 0))', 'tconst']},
    {'columns': ['(coalesce(start_year, 0))', 'tconst']},
],
) }}
{{ follow_change_log() }}

-- Director and writer names in credit order (title.crew's arrays), people IMDb does not list left out. The credits
-- are unnested on their own so that the names come from one hash join rather than a lookup per credit.
with crew_credits as (
    select crew.tconst, 'director' as role, director.nconst, director.position
    from {{ ref('stg_imdb__title_crew') }} as crew
    cross join lateral unnest(crew.directors) with ordinality as director (nconst, position)
    where {{ touched_only('crew.tconst') }}
    union all
    select crew.tconst, 'writer' as role, writer.nconst, writer.position
    from {{ ref('stg_imdb__title_crew') }} as crew
    cross join lateral unnest(crew.writers) with ordinality as writer (nconst, position)
    where {{ touched_only('crew.tconst') }}
),

crew_names as (
    select
        credit.tconst,
        array_agg(people.primary_name order by credit.position) filter (where credit.role = 'director')
            as director_names,
        array_agg(people.primary_name order by credit.position) filter (where credit.role = 'writer') as writer_names
    from crew_credits as credit
    inner join {{ ref('stg_imdb__name_basics') }} as people on people.nconst = credit.nconst
    group by credit.tconst
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
    coalesce(crew_names.director_names, '{}'::text[]) as director_names,
    coalesce(crew_names.writer_names, '{}'::text[]) as writer_names,
    episode.series_tconst,
    series.primary_title as series_title,
    episode.season_number,
    episode.episode_number
from {{ ref('stg_imdb__title_basics') }} as basics
left join {{ ref('stg_imdb__title_ratings') }} as ratings on ratings.tconst = basics.tconst
left join crew_names on crew_names.tconst = basics.tconst
left join {{ ref('stg_imdb__title_episode') }} as episode on episode.tconst = basics.tconst
left join {{ ref('stg_imdb__title_basics') }} as series on series.tconst = episode.series_tconst
where {{ touched_only('basics.tconst') }}
