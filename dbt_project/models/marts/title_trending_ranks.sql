{#- The API's /v1/charts/trending reads one chart in rank order from here. Its index has a NULL type or genre (the
    chart of all) as '': with equalities on all three, not IS NULL, the index is in rank order, and a page reads only
    its own rows. -#}
{{ config(indexes=[
    {'columns': ['window_days', "(coalesce(title_type, ''))", "(coalesce(genre, ''))", 'rank'], 'unique': True},
]) }}

-- The titles that gained votes in each window: a chart lists no title without a gain, or whose window is unknown.
with gains as (
    select 1 as window_days, tconst, title_type, num_votes, votes_gained_1d as votes_gained
    from {{ ref('title_rating_trends') }}
    where votes_gained_1d > 0
    union all
    select 7 as window_days, tconst, title_type, num_votes, votes_gained_7d as votes_gained
    from {{ ref('title_rating_trends') }}
    where votes_gained_7d > 0
    union all
    select 30 as window_days, tconst, title_type, num_votes, votes_gained_30d as votes_gained
    from {{ ref('title_rating_trends') }}
    where votes_gained_30d > 0
),

-- Each gain in the chart of every genre (genre NULL) and in that of each of the title's genres.
by_genre as (
    select window_days, tconst, title_type, num_votes, votes_gained, null::text as genre
    from gains
    union all
    select gains.window_days, gains.tconst, gains.title_type, gains.num_votes, gains.votes_gained, genres.genre
    from gains
    inner join {{ ref('title_genres') }} as genres on genres.tconst = gains.tconst
),

-- And each of those in the chart of every type (title_type NULL) and in that of the title's own type.
charts as (
    select window_days, null::text as title_type, genre, tconst, num_votes, votes_gained
    from by_genre
    union all
    select window_days, title_type, genre, tconst, num_votes, votes_gained
    from by_genre
    where title_type is not null
)

-- Ties go to the title with more votes, then the smaller id.
select
    window_days,
    title_type,
    genre,
    row_number() over (
        partition by window_days, title_type, genre order by votes_gained desc, num_votes desc, tconst asc
    )::integer as rank,
    tconst,
    votes_gained,
    num_votes
from charts
