select
    genres.genre,
    titles.start_year,
    count(*) as titles,
    count(titles.average_rating) as rated_titles,
    coalesce(sum(titles.num_votes), 0) as total_votes,
    round(sum(titles.average_rating * titles.num_votes) / nullif(sum(titles.num_votes), 0), 2)
        as weighted_average_rating
from {{ ref('title_genres') }} as genres
inner join {{ ref('titles') }} as titles on titles.tconst = genres.tconst
where titles.start_year is not null
group by genres.genre, titles.start_year
