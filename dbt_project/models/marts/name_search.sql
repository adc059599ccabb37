{{ config(indexes=[{'columns': ['document'], 'type': 'gin'}, {'columns': ['nconst'], 'unique': True}]) }}

-- One search document per person: the name IMDb credits them as, folded by search_text(). Built from name.basics
-- alone so that it does not wait for the credit marts; the API ranks matches by their credits.
select
    nconst,
    primary_name,
    to_tsvector('simple', coalesce(imdb_marts.search_text(primary_name), '')) as document
from {{ ref('stg_imdb__name_basics') }}
