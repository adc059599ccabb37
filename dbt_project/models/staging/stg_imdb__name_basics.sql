select
    nconst,
    primary_name,
    birth_year,
    death_year,
    coalesce(primary_profession, '{}'::text[]) as professions,
    coalesce(known_for_titles, '{}'::text[]) as known_for_tconsts
from {{ source('imdb', 'name_basics') }}
