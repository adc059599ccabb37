{{ config(indexes=[{'columns': ['tconst'], 'unique': True}]) }}

-- Every window counts back from the history's latest release. A window that starts before the history's first
-- release has no gains: nothing is known of that day, and counting from 0 would credit a title with all its votes.
with releases as (
    select
        min(valid_from) as first_release,
        max(valid_from) as latest_release
    from {{ ref('stg_imdb__title_ratings_history') }}
),

-- The rows valid on some day of the longest window (30 days): each title's current row and those the windows start in.
recent as (
    select history.*
    from {{ ref('stg_imdb__title_ratings_history') }} as history
    cross join releases
    where history.valid_to is null or history.valid_to > releases.latest_release - 30
),

-- Titles rated at the latest release: a current row of NULLs is a title that lost its rating.
rated as (
    select tconst, average_rating, num_votes
    from recent
    where valid_to is null and num_votes is not null
)

-- A title unrated on a window's first day (not yet rated, or its rating lost) gained all its votes since, and its
-- rating has no change.
select
    rated.tconst,
    basics.title_type,
    basics.primary_title,
    basics.start_year,
    coalesce(basics.genres, '{}'::text[]) as genres,
    rated.average_rating,
    rated.num_votes,
    case
        when releases.first_release <= releases.latest_release - 1
            then rated.num_votes - coalesce(day_ago.num_votes, 0)
    end as votes_gained_1d,
    rated.average_rating - day_ago.average_rating as rating_change_1d,
    case
        when releases.first_release <= releases.latest_release - 7
            then rated.num_votes - coalesce(week_ago.num_votes, 0)
    end as votes_gained_7d,
    rated.average_rating - week_ago.average_rating as rating_change_7d,
    case
        when releases.first_release <= releases.latest_release - 30
            then rated.num_votes - coalesce(month_ago.num_votes, 0)
    end as votes_gained_30d,
    rated.average_rating - month_ago.average_rating as rating_change_30d
from rated
cross join releases
left join {{ ref('stg_imdb__title_basics') }} as basics on basics.tconst = rated.tconst
-- The title's row valid on each window's first day, if it had one.
left join recent as day_ago
    on day_ago.tconst = rated.tconst
    and day_ago.valid_from <= releases.latest_release - 1
    and (day_ago.valid_to is null or day_ago.valid_to > releases.latest_release - 1)
left join recent as week_ago
    on week_ago.tconst = rated.tconst
    and week_ago.valid_from <= releases.latest_release - 7
    and (week_ago.valid_to is null or week_ago.valid_to > releases.latest_release - 7)
left join recent as month_ago
    on month_ago.tconst = rated.tconst
    and month_ago.valid_from <= releases.latest_release - 30
    and (month_ago.valid_to is null or month_ago.valid_to > releases.latest_release - 30)
