select
    tconst,
    parent_tconst as series_tconst,
    season_number,
    episode_number
from {{ source('imdb', 'title_episode') }}
