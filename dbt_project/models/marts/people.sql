{{ config(indexes=[{'columns': ['nconst'], 'unique': True}]) }}

-- Credits per person and category, and the years of their titles, from one pass over title_people. The join is a
-- left join so that a credit counts even if its title had gone (title_people keeps only listed titles anyway).
with per_category as (
    select
        credit.nconst,
        credit.category,
        count(*) as credits,
        min(titles.start_year) as first_credited_year,
        max(titles.start_year) as last_credited_year
    from {{ ref('title_people') }} as credit
    left join {{ ref('stg_imdb__title_basics') }} as titles on titles.tconst = credit.tconst
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
