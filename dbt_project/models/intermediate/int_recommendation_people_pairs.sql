{#-
The first block: pairs of eligible titles that share a director, writer or cast member, with how many of each.
A person credited on more than `recommendation_max_titles_per_person` eligible titles is left out: like a stop
word, they would relate everything, and the pairs through them grow with the square of their titles.
-#}

with credits as (
    select tconst, nconst, role from {{ ref('int_recommendation_credits') }}
),

blocking_people as (
    select nconst, role
    from credits
    group by nconst, role
    having count(*) <= {{ var('recommendation_max_titles_per_person') }}
)

select
    title.tconst,
    other.tconst as recommended_tconst,
    count(*) filter (where title.role = 'crew') as shared_directors_writers,
    count(*) filter (where title.role = 'cast') as shared_cast
from credits as title
inner join blocking_people on blocking_people.nconst = title.nconst and blocking_people.role = title.role
inner join credits as other
    on other.nconst = title.nconst and other.role = title.role and other.tconst <> title.tconst
group by title.tconst, other.tconst
