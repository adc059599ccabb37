{{ config(
    indexes=[{'columns': ['document'], 'type': 'gin'}, {'columns': ['nconst'], 'unique': True}],
    post_hook="{{ trigram_index('primary_name') }}",
) }}

-- One search document per person: the name IMDb credits them as, folded by search_text(). Rows are stored most
-- credited first, so that the API ranks only the first matches of a common name (see title_search).
select
    nconst,
    primary_name,
    professions,
    known_for_titles,
    total_credits,
    to_tsvector('simple', coalesce(imdb_marts.search_text(primary_name), '')) as document
from {{ ref('people') }}
order by total_credits desc, nconst asc
