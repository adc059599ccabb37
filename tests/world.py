"""A constructed IMDb: every row of every file spelled out, so a test knows exactly what each table and mart holds."""

from __future__ import annotations


def person(nconst, name, born, professions, known_for=()):
    return {
        "nconst": nconst,
        "primary_name": name,
        "birth_year": born,
        "primary_profession": professions,
        "known_for_titles": list(known_for),
    }


def title(tconst, kind, name, year, genres, runtime=100, end=None):
    return {
        "tconst": tconst,
        "title_type": kind,
        "primary_title": name,
        "original_title": name,
        "is_adult": False,
        "start_year": year,
        "end_year": end,
        "runtime_minutes": runtime,
        "genres": genres,
    }


def cast(tconst, *people):
    """Principals in billing order: (nconst, category) pairs."""
    return [
        {
            "tconst": tconst,
            "ordering": i,
            "nconst": n,
            "category": c,
            "characters": ["Someone"] if c != "director" else None,
        }
        for i, (n, c) in enumerate(people, start=1)
    ]


SHARED_CAST = [("nm0000003", "actress"), ("nm0000004", "actor"), ("nm0000005", "actress"), ("nm0000001", "director")]

# Two near-identical films (same genres, director, writer and cast), a film sharing only their genres, an unrelated
# comedy, and a series with two seasons of episodes.
WORLD = {
    "name.basics": [
        person("nm0000001", "Ada Director", 1960, ["director", "writer"], ["tt0000001", "tt0000002", "tt0000099"]),
        person("nm0000002", "Ben Writer", 1970, ["writer"]),
        person("nm0000003", "Cleo Actor", 1980, ["actress"]),
        person("nm0000004", "Dan Actor", 1981, ["actor"]),
        person("nm0000005", "Eve Actor", 1982, ["actress"]),
        person("nm0000006", "Finn Other", 1990, ["actor"]),
        person("nm0000007", "Gus Showrunner", 1975, ["director"]),
    ],
    "title.basics": [
        title("tt0000001", "movie", "Twin Hearts", 2001, ["Drama", "Romance"]),
        title("tt0000002", "movie", "Twin Hearts II", 2003, ["Drama", "Romance"]),
        title("tt0000003", "movie", "Unrelated Comedy", 2010, ["Comedy"]),
        title("tt0000004", "movie", "Another Romance", 2005, ["Drama", "Romance"]),
        title("tt0000010", "tvSeries", "The Show", 2015, ["Comedy"], runtime=30, end=2018),
        title("tt0000011", "tvEpisode", "Pilot", 2015, ["Comedy"], runtime=30),
        title("tt0000012", "tvEpisode", "Second", 2015, ["Comedy"], runtime=30),
        title("tt0000013", "tvEpisode", "Finale", 2016, ["Comedy"], runtime=30),
        title("tt0000014", "tvEpisode", "Unaired", 2016, ["Comedy"], runtime=30),
    ],
    "title.crew": [
        {"tconst": "tt0000001", "directors": ["nm0000001"], "writers": ["nm0000002", "nm0000001"]},
        {"tconst": "tt0000002", "directors": ["nm0000001"], "writers": ["nm0000002", "nm0000001"]},
        {"tconst": "tt0000003", "directors": ["nm0000007"]},
        {"tconst": "tt0000004", "directors": ["nm0000007"]},
        {"tconst": "tt0000010", "directors": ["nm0000007"]},
        {"tconst": "tt0000011", "directors": ["nm0000007"]},
    ],
    "title.principals": [
        *cast("tt0000001", *SHARED_CAST),
        *cast("tt0000002", *SHARED_CAST),
        *cast("tt0000003", ("nm0000006", "actor")),
        *cast("tt0000004", ("nm0000006", "actor")),
        *cast("tt0000011", ("nm0000006", "actor")),
    ],
    "title.episode": [
        {"tconst": "tt0000011", "parent_tconst": "tt0000010", "season_number": 1, "episode_number": 1},
        {"tconst": "tt0000012", "parent_tconst": "tt0000010", "season_number": 1, "episode_number": 2},
        {"tconst": "tt0000013", "parent_tconst": "tt0000010", "season_number": 2, "episode_number": 1},
        {"tconst": "tt0000014", "parent_tconst": "tt0000010", "season_number": 2, "episode_number": 2},
    ],
    "title.ratings": [
        {"tconst": "tt0000001", "average_rating": "8.1", "num_votes": 50000},
        {"tconst": "tt0000002", "average_rating": "7.9", "num_votes": 40000},
        {"tconst": "tt0000003", "average_rating": "6.0", "num_votes": 20000},
        {"tconst": "tt0000004", "average_rating": "7.0", "num_votes": 30000},
        {"tconst": "tt0000010", "average_rating": "8.5", "num_votes": 10000},
        {"tconst": "tt0000011", "average_rating": "8.0", "num_votes": 3000},
        {"tconst": "tt0000012", "average_rating": "9.0", "num_votes": 1000},
        {"tconst": "tt0000013", "average_rating": "7.0", "num_votes": 500},
    ],
    "title.akas": [
        {"title_id": "tt0000001", "ordering": 1, "title": "Twin Hearts", "region": "US", "is_original_title": True},
        {"title_id": "tt0000001", "ordering": 2, "title": "Cœurs jumeaux", "region": "FR", "types": ["imdbDisplay"]},
        {"title_id": "tt0000003", "ordering": 1, "title": "Comédie sans rapport", "region": "FR", "language": "fr"},
    ],
}
