"""The shapes of the API's answers, for OpenAPI (`/docs`). PostgreSQL builds the JSON itself; a test validates
every route's answers against these models (extra fields forbidden), so the documentation cannot drift."""

from __future__ import annotations

from datetime import date
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rating(Model):
    average: float | None
    votes: int


class PersonRef(Model):
    nconst: str
    name: str


class EpisodeOf(Model):
    series_tconst: str
    series_title: str | None
    season: int | None
    episode: int | None


class TitleSummary(Model):
    tconst: str
    title_type: str | None
    primary_title: str | None
    original_title: str | None
    is_adult: bool | None
    start_year: int | None
    end_year: int | None
    runtime_minutes: int | None
    genres: list[str]
    rating: Rating | None


class Title(TitleSummary):
    directors: list[PersonRef]
    writers: list[PersonRef]
    episode: EpisodeOf | None


class Items(Model, Generic[T]):
    items: list[T]


class Page(Items[T], Generic[T]):
    next_cursor: str | None
    """Pass it as `cursor` for the next page; null on the last page."""


class Credit(Model):
    nconst: str
    name: str | None
    category: str
    billing_order: int | None
    job: str | None
    characters: list[str] | None
    in_principals: bool
    in_crew: bool


class Aka(Model):
    ordering: int
    title: str | None
    region: str | None
    language: str | None
    types: list[str]
    attributes: list[str]
    is_original_title: bool | None


class Similar(Model):
    rank: int
    tconst: str
    primary_title: str | None
    title_type: str | None
    start_year: int | None
    score: float
    content_score: float
    quality_score: float
    shared_genres: int
    genre_similarity: float
    shared_directors_writers: int
    shared_cast: int


class Episode(Model):
    tconst: str
    title: str | None
    season: int | None
    episode: int | None
    start_year: int | None
    average_rating: float | None
    num_votes: int | None


class RatingChange(Model):
    valid_from: date
    """The release from which the title had these values."""
    valid_to: date | None
    """The release of the title's next change; null while these values hold."""
    average_rating: float | None
    """Null (with num_votes) from a release at which the title lost its rating."""
    num_votes: int | None


class KnownFor(Model):
    tconst: str
    primary_title: str | None


class Person(Model):
    nconst: str
    primary_name: str | None
    birth_year: int | None
    death_year: int | None
    professions: list[str]
    known_for: list[KnownFor]
    credits_by_category: dict[str, int]
    total_credits: int
    first_credited_year: int | None
    last_credited_year: int | None


class FilmographyEntry(Model):
    tconst: str
    primary_title: str | None
    title_type: str | None
    start_year: int | None
    category: str
    billing_order: int | None
    average_rating: float | None
    num_votes: int | None


class TitleHit(Model):
    tconst: str
    primary_title: str | None
    title_type: str | None
    start_year: int | None
    num_votes: int | None
    rank: float


class NameHit(Model):
    nconst: str
    primary_name: str | None
    professions: list[str]
    known_for_titles: list[str | None]
    total_credits: int
    rank: float


class GenreStats(Model):
    genre: str
    titles: int
    rated_titles: int
    total_votes: int
    weighted_average_rating: float | None


class TrendingTitle(Model):
    rank: int
    """In the chart of the type and genre asked for (or of all), whatever min_votes leaves out."""
    tconst: str
    primary_title: str | None
    title_type: str | None
    start_year: int | None
    genres: list[str]
    average_rating: float | None
    num_votes: int
    votes_gained: int
    """Votes gained over the window: since the values the title had when it started (0 if it was unrated)."""
    rating_change: float | None
    """Change of the rating over the window; null if the title was unrated when it started."""


class DatasetFreshness(Model):
    kind: Literal["table", "mart"]
    """A table loaded from one of IMDb's files, or a mart dbt builds from the tables."""
    file: str | None
    """The IMDb file a table is loaded from; null for a mart."""
    table: str
    rows: int | None
    """Rows of the table's last load; null for a mart."""
    source_last_modified: str | None
    """The file's Last-Modified when it was downloaded."""
    release_date: str | None
    """The day IMDb published the loaded file (its Last-Modified, in UTC), as an ISO date."""
    loaded_at: str | None
    """When the table was last swapped in."""
    heap_bytes: int | None
    """The rows' bytes on disk (with TOAST); null while the table does not exist."""
    index_bytes: int | None
    """The indexes' bytes on disk; null while the table does not exist."""


class RunLaunched(Model):
    run_id: str
    status_url: str


class RunStatus(Model):
    run_id: str
    status: str


class KeyInfo(Model):
    id: int
    name: str
    role: str
    key_prefix: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None


class NewKeyCreated(KeyInfo):
    key: str
    """The key itself: shown in this answer only, stored as a hash."""


class ErrorDetail(Model):
    status: int
    message: str
    details: list[dict] | None = None


class Error(Model):
    error: ErrorDetail
