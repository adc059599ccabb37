{#- The unique index serves lookups by title and is what makes (tconst, nconst, category) unique. Rebuilt by title
    from the change log; the people of the credits it deletes and inserts are logged for people and name_search. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='touched_keys',
    unique_key='tconst',
    meta={
        'change_tables': ['title_basics', 'title_crew', 'title_principals', 'name_basics'],
        'change_parents': [],
    },
    pre_hook=["{{ create_touched_keys(touched_title_people()) }}", "{{ log_title_people('before') }}"],
    post_hook="{{ log_title_people('after') }}",
    indexes=[{'columns': ['tconst', 'nconst', 'category'], 'unique': True}, {'columns': ['nconst']}],
) }}
{{ follow_change_log() }}

-- Every credit of a person on a title: principals plus the directors and writers of title.crew, which IMDb does
-- not always repeat among the principals. Credits of titles or people IMDb does not list are left out.
with crew_credits as (
    select crew.tconst, director.nconst, 'director' as category
    from {{ ref('stg_imdb__title_crew') }} as crew
    cross join lateral unnest(crew.directors) as director (nconst)
    where {{ touched_only('crew.tconst') }}
    union all
    select crew.tconst, writer.nconst, 'writer' as category
    from {{ ref('stg_imdb__title_crew') }} as crew
    cross join lateral unnest(crew.writers) as writer (nconst)
    where {{ touched_only('crew.tconst') }}
),

credits as (
    select tconst, nconst, coalesce(category, 'unknown') as category, ordering, true as in_principals, false as in_crew
    from {{ ref('stg_imdb__title_principals') }}
    where {{ touched_only('tconst') }}
    union all
    select tconst, nconst, category, null as ordering, false as in_principals, true as in_crew
    from crew_credits
)

select
    credits.tconst,
    credits.nconst,
    credits.category,
    min(credits.ordering) as billing_order,
    bool_or(credits.in_principals) as in_principals,
    bool_or(credits.in_crew) as in_crew
from credits
inner join {{ ref('stg_imdb__title_basics') }} as titles on titles.tconst = credits.tconst
inner join {{ ref('stg_imdb__name_basics') }} as people on people.nconst = credits.nconst
group by credits.tconst, credits.nconst, credits.category
