{{ config(indexes=[
    {'columns': ['series_tconst', 'season_number', 'episode_number']},
    {'columns': ['episode_tconst'], 'unique': True},
]) }}

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
)

select
    *,
    count(*) over season as season_episodes,
    count(average_rating) over season as season_rated_episodes,
    round(avg(average_rating) over season, 2) as season_average_rating,
    sum(num_votes) over season as season_votes
from episodes
window season as (partition by series_tconst, season_number)
