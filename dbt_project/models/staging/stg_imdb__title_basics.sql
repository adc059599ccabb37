select
    tconst,
    title_type,
    primary_title,
    original_title,
    is_adult,
    start_year,
    end_year,
    runtime_minutes,
    coalesce(genres, '{}'::text[]) as genres
from {{ source('imdb', 'title_basics') }}
