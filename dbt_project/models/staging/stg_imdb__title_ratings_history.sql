-- The loads of title.ratings append to the history in the transaction that swaps the table in: the reference below
-- makes every model reading the history downstream of the ratings table, so a ratings refresh rebuilds them.
-- depends_on: {{ source('imdb', 'title_ratings') }}
select
    tconst,
    valid_from,
    lead(valid_from) over (partition by tconst order by valid_from) as valid_to,
    average_rating,
    num_votes
from {{ source('imdb', 'title_ratings_history') }}
