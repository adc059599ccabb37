select
    tconst,
    average_rating,
    num_votes
from {{ source('imdb', 'title_ratings') }}
