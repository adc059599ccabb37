{#- Who made each eligible title, as the blocks see it: its directors and writers (crew) and principal cast. -#}

select distinct
    credit.tconst,
    credit.nconst,
    case when credit.category in ('director', 'writer') then 'crew' else 'cast' end as role
from {{ ref('title_people') }} as credit
inner join {{ ref('int_recommendation_titles') }} as eligible on eligible.tconst = credit.tconst
where credit.category in ('director', 'writer', 'actor', 'actress', 'self')
