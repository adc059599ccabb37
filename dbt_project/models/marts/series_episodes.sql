{#- Rebuilt by series from the change log: a season's figures change with any of its episodes. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='touched_keys',
    unique_key='series_tconst',
    meta={'change_tables': ['title_episode', 'title_basics', 'title_ratings'], 'change_parents': []},
    pre_hook="{{ create_touched_keys(touched_series()) }}",
    indexes=[
        {'columns': ['series_tconst', 'season_number', 'episode_number']},
        {'columns': ['episode_tconst'], 'unique': True},
    ],
) }}
{{ follow_change_log() }}

with episodes as (
    select
        episode.series_tconst,
        series.primary_title as series_title,
        episode.season_number,
        episode.episode_number,
        episode.tconst as episode_tconst,
        titles.primary_title as episode_title,
        titles.start_year,
        ratings.average_rating,
        ratings.num_votes
    from {{ ref('stg_imdb__title_episode') }} as episode
    inner join {{ ref('stg_imdb__title_basics') }} as series on series.tconst = episode.series_tconst
    inner join {{ ref('stg_imdb__title_basics') }} as titles on titles.tconst = episode.tconst
    left join {{ ref('stg_imdb__title_ratings') }} as ratings on ratings.tconst = episode.tconst
    where {{ touched_only('episode.series_tconst') }}
)

select
    *,
    count(*) over season as season_episodes,
    count(average_rating) over season as season_rated_episodes,
    round(avg(average_rating) over season, 2) as season_average_rating,
    sum(num_votes) over season as season_votes
from episodes
window season as (partition by series_tconst, season_number)
