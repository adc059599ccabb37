{#-
The known-for names come from one hash join: the planner otherwise looks each title up in its index, a few
million lookups, so nested loops are off for this model's full build.

Rebuilt by person from the change log: the people whose own row changed, whose credits title_people deleted or
inserted (its log, so it is built first), or who are known for a title whose name changed.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='touched_keys',
    unique_key='nconst',
    meta={
        'change_tables': ['name_basics', 'title_basics', 'title_crew', 'title_principals'],
        'change_parents': ['title_people'],
    },
    pre_hook=[
        "{{ create_touched_keys(touched_people(ref('stg_imdb__name_basics'))) }}",
        "{{ on_full_build('set local enable_nestloop = off') }}",
    ],
    indexes=[{'columns': ['nconst'], 'unique': True}],
) }}
{{ follow_change_log() }}
-- depends_on: {{ ref('title_people') }}

-- Credits per person and category, and the years of their titles. A full build counts them from the same inputs
-- and rules as title_people (principals plus title.crew's directors and writers, titles IMDb lists) rather than
-- from title_people itself, which is faster; an incremental one reads the touched people's credits from
-- title_people, built just before. A credit is a distinct title per person and category, as in title_people;
-- credits of people IMDb does not list fall out at the join to name.basics below.
with credited as (
    {%- if is_incremental() %}
        select tconst, nconst, category
        from {{ ref('title_people') }}
        where {{ touched_only('nconst') }}
    {%- else %}
        select tconst, nconst, coalesce(category, 'unknown') as category
        from {{ ref('stg_imdb__title_principals') }}
        union all
        select crew.tconst, director.nconst, 'director' as category
        from {{ ref('stg_imdb__title_crew') }} as crew
        cross join lateral unnest(crew.directors) as director (nconst)
        union all
        select crew.tconst, writer.nconst, 'writer' as category
        from {{ ref('stg_imdb__title_crew') }} as crew
        cross join lateral unnest(crew.writers) as writer (nconst)
    {%- endif %}
),

per_category as (
    select
        credit.nconst,
        credit.category,
        count(distinct credit.tconst) as credits,
        min(titles.start_year) as first_credited_year,
        max(titles.start_year) as last_credited_year
    from credited as credit
    inner join {{ ref('stg_imdb__title_basics') }} as titles on titles.tconst = credit.tconst
    group by credit.nconst, credit.category
),

credits as (
    select
        nconst,
        jsonb_object_agg(category, credits) as credits_by_category,
        sum(credits)::integer as total_credits,
        min(first_credited_year) as first_credited_year,
        max(last_credited_year) as last_credited_year
    from per_category
    group by nconst
),

-- Names of the known-for titles, aligned with known_for_tconsts (NULL where IMDb does not list the title).
known_for as (
    select known.nconst, array_agg(titles.primary_title order by known.position) as known_for_titles
    from (
        select people.nconst, title.tconst, title.position
        from {{ ref('stg_imdb__name_basics') }} as people
        cross join lateral unnest(people.known_for_tconsts) with ordinality as title (tconst, position)
        where {{ touched_only('people.nconst') }}
    ) as known
    left join {{ ref('stg_imdb__title_basics') }} as titles on titles.tconst = known.tconst
    group by known.nconst
)

select
    people.nconst,
    people.primary_name,
    people.birth_year,
    people.death_year,
    people.professions,
    people.known_for_tconsts,
    coalesce(known_for.known_for_titles, '{}'::text[]) as known_for_titles,
    coalesce(credits.credits_by_category, '{}'::jsonb) as credits_by_category,
    coalesce(credits.total_credits, 0) as total_credits,
    credits.first_credited_year,
    credits.last_credited_year
from {{ ref('stg_imdb__name_basics') }} as people
left join known_for on known_for.nconst = people.nconst
left join credits on credits.nconst = people.nconst
where {{ touched_only('people.nconst') }}
