{{ config(indexes=[{'columns': ['nconst'], 'unique': True}]) }}

with per_category as (
    select nconst, category, count(*) as credits
    from {{ ref('title_people') }}
    group by nconst, category
),

credits as (
    select
        nconst,
        jsonb_object_agg(category, credits) as credits_by_category,
        sum(credits)::integer as total_credits
    from per_category
    group by nconst
),

credited_years as (
    select credit.nconst, min(titles.start_year) as first_credited_year, max(titles.start_year) as last_credited_year
    from {{ ref('title_people') }} as credit
    inner join {{ ref('stg_imdb__title_basics') }} as titles on titles.tconst = credit.tconst
    group by credit.nconst
),

-- Names of the known-for titles, aligned with known_for_tconsts (NULL where IMDb does not list the title).
known_for as (
    select people.nconst, array_agg(titles.primary_title order by known.position) as known_for_titles
    from {{ ref('stg_imdb__name_basics') }} as people
    cross join lateral unnest(people.known_for_tconsts) with ordinality as known (tconst, position)
    left join {{ ref('stg_imdb__title_basics') }} as titles on titles.tconst = known.tconst
    group by people.nconst
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
    credited_years.first_credited_year,
    credited_years.last_credited_year
from {{ ref('stg_imdb__name_basics') }} as people
left join known_for on known_for.nconst = people.nconst
left join credits on credits.nconst = people.nconst
left join credited_years on credited_years.nconst = people.nconst
