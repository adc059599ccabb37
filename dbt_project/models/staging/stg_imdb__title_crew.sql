select
    tconst,
    coalesce(directors, '{}'::text[]) as directors,
    coalesce(writers, '{}'::text[]) as writers
from {{ source('imdb', 'title_crew') }}
