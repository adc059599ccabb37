select
    title_id as tconst,
    ordering,
    title,
    region,
    language,
    coalesce(types, '{}'::text[]) as types,
    coalesce(attributes, '{}'::text[]) as attributes,
    is_original_title
from {{ source('imdb', 'title_akas') }}
