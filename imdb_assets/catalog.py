"""The seven IMDb datasets: the single source of truth for every layer.

Parsing, table DDL, asset definitions, dbt sources, the sample generator and the tests are all derived from
``DATASETS``; nothing else in the project spells out a file's columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    """How a field in the TSV is typed, both in Polars and in PostgreSQL."""

    TEXT = "text"
    INT = "int"
    BOOL = "bool"
    RATING = "rating"  # one decimal, kept exactly: numeric(3,1)
    COMMA_LIST = "comma_list"  # "a,b,c" -> text[]
    X02_LIST = "x02_list"  # "a\x02b" -> text[]
    JSON_LIST = "json_list"  # '["a","b"]' -> text[]


SQL_TYPES = {
    Kind.TEXT: "text",
    Kind.INT: "integer",
    Kind.BOOL: "boolean",
    Kind.RATING: "numeric(3,1)",
    Kind.COMMA_LIST: "text[]",
    Kind.X02_LIST: "text[]",
    Kind.JSON_LIST: "text[]",
}

LIST_SEPARATORS = {Kind.COMMA_LIST: ",", Kind.X02_LIST: "\x02"}


@dataclass(frozen=True)
class Column:
    source: str  # camelCase header in IMDb's file
    name: str  # snake_case column in PostgreSQL and the parsed frame
    kind: Kind = Kind.TEXT
    description: str = ""

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.kind]

    @property
    def is_list(self) -> bool:
        return self.kind in (Kind.COMMA_LIST, Kind.X02_LIST, Kind.JSON_LIST)


@dataclass(frozen=True)
class Dataset:
    file_stem: str  # "title.basics": IMDb's name, the file is f"{file_stem}.tsv.gz"
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = field(default=())  # secondary b-tree indexes for joins
    share_of_rows: float = 0.0  # rows relative to the whole IMDb release (~203M), for the generator

    @property
    def file_name(self) -> str:
        return f"{self.file_stem}.tsv.gz"

    @property
    def table(self) -> str:
        return self.file_stem.replace(".", "_")

    @property
    def header(self) -> str:
        return "\t".join(c.source for c in self.columns)


C = Column
T, INT, B = Kind.TEXT, Kind.INT, Kind.BOOL

DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "name.basics",
        "People: actors, directors, writers and crew.",
        (
            C("nconst", "nconst", T, "Person id, e.g. nm0000001."),
            C("primaryName", "primary_name", T, "Name the person is most often credited as."),
            C("birthYear", "birth_year", INT, "Year of birth."),
            C("deathYear", "death_year", INT, "Year of death, NULL if alive or unknown."),
            C("primaryProfession", "primary_profession", Kind.COMMA_LIST, "Top three professions."),
            C("knownForTitles", "known_for_titles", Kind.COMMA_LIST, "Title ids the person is known for."),
        ),
        primary_key=("nconst",),
        share_of_rows=15.0,
    ),
    Dataset(
        "title.akas",
        "Localised titles: one row per title and ordering.",
        (
            C("titleId", "title_id", T, "Title id, e.g. tt0000001."),
            C("ordering", "ordering", INT, "Distinguishes the akas of one title."),
            C("title", "title", T, "The localised title."),
            C("region", "region", T, "Region of this version."),
            C("language", "language", T, "Language of the title."),
            C("types", "types", Kind.X02_LIST, "alternative, dvd, festival, tv, video, working, original..."),
            C("attributes", "attributes", Kind.X02_LIST, "Extra terms describing this title."),
            C("isOriginalTitle", "is_original_title", B, "Whether this is the original title."),
        ),
        primary_key=("title_id", "ordering"),
        share_of_rows=55.0,
    ),
    Dataset(
        "title.basics",
        "Titles: movies, shorts, series, episodes, games.",
        (
            C("tconst", "tconst", T, "Title id, e.g. tt0000001."),
            C("titleType", "title_type", T, "movie, short, tvSeries, tvEpisode, video, ..."),
            C("primaryTitle", "primary_title", T, "The title used for promotion."),
            C("originalTitle", "original_title", T, "Title in the original language."),
            C("isAdult", "is_adult", B, "Adult title."),
            C("startYear", "start_year", INT, "Release year; for a series, its first year."),
            C("endYear", "end_year", INT, "Last year of a series, NULL otherwise."),
            C("runtimeMinutes", "runtime_minutes", INT, "Primary runtime in minutes."),
            C("genres", "genres", Kind.COMMA_LIST, "Up to three genres."),
        ),
        primary_key=("tconst",),
        share_of_rows=12.3,
    ),
    Dataset(
        "title.crew",
        "Directors and writers of each title.",
        (
            C("tconst", "tconst", T, "Title id."),
            C("directors", "directors", Kind.COMMA_LIST, "Person ids of the directors."),
            C("writers", "writers", Kind.COMMA_LIST, "Person ids of the writers."),
        ),
        primary_key=("tconst",),
        share_of_rows=12.3,
    ),
    Dataset(
        "title.episode",
        "Episodes and the series they belong to.",
        (
            C("tconst", "tconst", T, "Episode title id."),
            C("parentTconst", "parent_tconst", T, "Series title id."),
            C("seasonNumber", "season_number", INT, "Season number."),
            C("episodeNumber", "episode_number", INT, "Episode number within the season."),
        ),
        primary_key=("tconst",),
        indexes=(("parent_tconst",),),
        share_of_rows=9.5,
    ),
    Dataset(
        "title.principals",
        "Principal cast and crew of each title.",
        (
            C("tconst", "tconst", T, "Title id."),
            C("ordering", "ordering", INT, "Distinguishes the principals of one title."),
            C("nconst", "nconst", T, "Person id."),
            C("category", "category", T, "Job category: actor, director, self, ..."),
            C("job", "job", T, "Specific job title, if any."),
            C("characters", "characters", Kind.JSON_LIST, "Characters played, decoded from a JSON array."),
        ),
        primary_key=("tconst", "ordering"),
        indexes=(("nconst",),),
        share_of_rows=98.0,
    ),
    Dataset(
        "title.ratings",
        "User ratings of titles.",
        (
            C("tconst", "tconst", T, "Title id."),
            C("averageRating", "average_rating", Kind.RATING, "Weighted average of user ratings."),
            C("numVotes", "num_votes", INT, "Number of votes."),
        ),
        primary_key=("tconst",),
        share_of_rows=1.6,
    ),
)

BY_STEM = {d.file_stem: d for d in DATASETS}
SCHEMA = "imdb"
# The first part of the asset key of each of a file's layers: its raw file, its parsed frame, its table.
RAW_LAYER, PARSED_LAYER, TABLE_LAYER = "raw", "parsed", SCHEMA
LAYERS = (RAW_LAYER, PARSED_LAYER, TABLE_LAYER)
