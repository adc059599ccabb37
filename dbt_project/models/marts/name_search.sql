{{ config(
    materialized='incremental',
    incremental_strategy='touched_keys',
    unique_key='nconst',
    meta={
        'change_tables': ['name_basics', 'title_basics', 'title_crew', 'title_principals'],
        'change_parents': ['people'],
    },
    pre_hook="{{ create_touched_keys(touched_people(ref('people'))) }}",
    indexes=[{'columns': ['document'], 'type': 'gin'}, {'columns': ['nconst'], 'unique': True}],
    post_hook="{{ on_full_build(trigram_index('primary_name')) }}",
) }}
{{ follow_change_log() }}

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
where {{ touched_only('nconst') }}
order by total_credits desc, nconst asc
