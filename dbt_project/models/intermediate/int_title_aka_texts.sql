{#-
Every aka of a title in one text, folded by search_text(), for title_search's documents.

A table, not inlined: in title_search's parallel plan each worker would aggregate all the akas again (three times
the work on two cores), and a change of votes alone rebuilds title_search from this table without reading the akas.
Rebuilt by title from the change log.
-#}

{{ config(
    materialized='incremental',
    incremental_strategy='touched_keys',
    unique_key='tconst',
    meta={'change_tables': ['title_akas'], 'change_parents': []},
    pre_hook="{{ create_touched_keys(changed_keys('title_akas')) }}",
) }}
{{ follow_change_log() }}

select tconst, imdb_marts.search_text(string_agg(title, ' ' order by ordering)) as akas
from {{ ref('stg_imdb__title_akas') }}
where {{ touched_only('tconst') }}
group by tconst
