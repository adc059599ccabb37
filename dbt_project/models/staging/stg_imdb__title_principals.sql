select
    tconst,
    ordering,
    nconst,
    category,
    job,
    coalesce(characters, '{}'::text[]) as characters
from {{ source('imdb', 'title_principals') }}
