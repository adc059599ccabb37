"""Successive daily releases of the seven IMDb files with known churn, so a refresh can be tested release by release.

``generate_releases`` writes a first release with ``generator.generate``, then each day's release derived from the
one before: votes and ratings move, titles arrive with their crew, akas, credits, episode rows and new people,
titles are retitled or get new genres, people get a death year, credits are added and removed, and a few titles are
deleted with all their rows. Each release is a folder named by its date, whose files' mtime is that date (what a
``file://`` mirror reports as Last-Modified); each daily one records its true changes, file by file, in
``churn.json``. Same arguments give byte-identical releases.

    uv run python -m imdb_dev.generator --rows 1000000 --out data/sample --releases 3
"""

from __future__ import annotations

import io
import json
import os
import zlib
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from imdb_assets.catalog import BY_STEM, DATASETS, Dataset
from imdb_dev.generator import (
    COMPRESS_LEVEL,
    GENRES,
    NON_EPISODE_TYPES,
    SERIES_TYPES,
    TEXT_QUIRKS,
    Counts,
    TitleChunk,
    choose,
    comma_lists,
    generate,
    name_basics,
    phrases,
    random_stream,
    title_akas,
    title_basics,
    title_crew,
    title_principals,
    title_ratings,
    uniform,
)

FIRST_DATE = date(2024, 3, 1)
RELEASES_DIR = "releases"  # <out>/releases/<ISO date>/ holds each release
CHURN_RECORD = "churn.json"
NULL = "\\N"
NEW_TITLES_RATED = 0.2  # share of new titles with votes on their first day
AVERAGE_MOVES = 1 / 3  # share of the titles whose votes grow whose one-decimal average moves too
QUIRKY_RETITLES = 0.2  # share of retitles to one of the generator's odd titles (quotes, backslashes, scripts)
WRITE_SLICE_ROWS = 500_000  # rows formatted at once when a release's file is written
# Episodes per title, as in a generated first release.
EPISODES_PER_TITLE = BY_STEM["title.episode"].share_of_rows / BY_STEM["title.basics"].share_of_rows


@dataclass(frozen=True)
class Churn:
    """What changes from one day's release to the next; each share is of the previous release's rows of that kind.

    IMDb publishes no figures for its daily churn: these defaults are guesses of its order of magnitude (IMDb grows
    by about 0.02% titles a day), to be replaced by what ``imdb churn`` measures on two real releases. A kind whose
    share is above zero happens at least once a day, so even a small release shows every kind.
    """

    rating_moves: float = 0.10  # rated titles whose votes grow; the average moves for a third of them
    new_titles: float = 0.0002  # new titles with crew, akas, principals, an episode row if one, a rating for a fifth
    new_names: float = 0.00015  # new people, each credited on a new title
    retitles: float = 0.00005  # titles whose primary title changes
    genre_edits: float = 0.0001  # titles whose genres change
    deaths: float = 0.00002  # people without a death year who get one (the release's year)
    credits_added: float = 0.0002  # titles with principals that get one more
    credits_removed: float = 0.00005  # titles with principals that lose their last one
    deleted_titles: float = 0.00001  # titles deleted with all their rows; never a series, nor the newest title

    def __post_init__(self) -> None:
        for knob in fields(self):
            if not 0 <= getattr(self, knob.name) <= 1:
                raise ValueError(f"churn {knob.name} must be a share between 0 and 1")

    @classmethod
    def parse(cls, text: str) -> Churn:
        """Knobs over the defaults from ``"rating_moves=0.2,deleted_titles=0"``."""
        names = {knob.name for knob in fields(cls)}
        values = {}
        for item in filter(None, text.split(",")):
            name, _, value = item.partition("=")
            if name.strip() not in names:
                raise ValueError(f"unknown churn knob {name.strip()!r}; the knobs are {', '.join(sorted(names))}")
            values[name.strip()] = float(value)
        return replace(cls(), **values)


@dataclass
class FileChange:
    rows: int  # valid rows of the file in this release
    inserted: int
    changed: int
    deleted: int


@dataclass
class ReleaseRecord:
    """A daily release's true changes against the release before it, as ``churn.json`` holds them."""

    date: str
    previous: str
    seed: int
    churn: Churn
    files: dict[str, FileChange]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> ReleaseRecord:
        raw = json.loads(path.read_text())
        files = {stem: FileChange(**change) for stem, change in raw["files"].items()}
        return cls(raw["date"], raw["previous"], raw["seed"], Churn(**raw["churn"]), files)


def how_many(share: float, rows: int) -> int:
    """Rows a share of ``rows`` makes, at least one when the share is above zero and there are rows."""
    return min(rows, max(1, round(share * rows))) if share > 0 else 0


def pick(rng: np.random.Generator, candidates: pl.Series, count: int) -> pl.Series:
    """``count`` distinct candidates at random, in the candidates' order."""
    count = min(count, len(candidates))
    return candidates.gather(np.sort(rng.choice(len(candidates), count, replace=False)))


def pick_rows(rng: np.random.Generator, frame: pl.DataFrame, count: int) -> pl.DataFrame:
    """``count`` distinct rows at random, in the frame's order."""
    return frame[np.sort(rng.choice(frame.height, min(count, frame.height), replace=False))]


def new_ids(prefix: str, after: int, count: int) -> pl.Series:
    """The next ``count`` ids after number ``after``, padded to seven digits like IMDb's."""
    numbers = pl.Series(np.arange(after + 1, after + count + 1, dtype=np.int64))
    return pl.select(pl.concat_str(pl.lit(prefix), pl.lit(numbers).cast(pl.String).str.zfill(7)))[:, 0]


def highest_id(frame: pl.DataFrame, column: str) -> int:
    return int(frame.select(pl.col(column).str.slice(2).cast(pl.Int64).max()).item() or 0)


def read_release_file(folder: Path, dataset: Dataset) -> pl.DataFrame:
    """Every field as the text IMDb wrote, ``\\N`` included; quoting off, since titles have unbalanced quotes."""
    frame = pl.read_csv(folder / dataset.file_name, separator="\t", quote_char=None, infer_schema=False)
    return frame.rename({c.source: c.name for c in dataset.columns})


def as_text(frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
    """A generator builder's typed rows as the text a release file holds."""
    return frame.select(pl.col(c.name).cast(pl.String).fill_null(NULL) for c in dataset.columns)


def write_release_file(folder: Path, dataset: Dataset, frame: pl.DataFrame) -> None:
    """Rows sorted like IMDb's (ids as text, orderings as numbers), gzipped like the first release."""
    order = [pl.col(k).cast(pl.Int64) if k == "ordering" else pl.col(k) for k in dataset.primary_key]
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)
    with (folder / dataset.file_name).open("wb") as out:
        out.write(compressor.compress(dataset.header.encode() + b"\n"))
        for part in frame.sort(order).iter_slices(WRITE_SLICE_ROWS):
            buffer = io.BytesIO()
            part.write_csv(buffer, separator="\t", quote_style="never", include_header=False)
            out.write(compressor.compress(buffer.getvalue()))
        out.write(compressor.flush())


def replaced(frame: pl.DataFrame, key: str, column: str, keys: pl.Series, values: pl.Series) -> pl.DataFrame:
    """``column`` set to ``values`` in the rows whose ``key`` is in ``keys``, in the same order."""
    edits = pl.DataFrame({key: keys, "edited": values})
    return (
        frame.join(edits, on=key, how="left", maintain_order="left")
        .with_columns(pl.coalesce("edited", column).alias(column))
        .drop("edited")
    )


class Day:
    """One day's release from the previous one: what changes is decided from title.basics and name.basics, then
    each file is read, changed and written in turn, with its true counts."""

    def __init__(self, previous: Path, folder: Path, day: int, release_date: date, seed: int, churn: Churn):
        self.previous, self.folder, self.day, self.seed, self.churn = previous, folder, day, seed, churn
        self.year = release_date.year
        self.changes: dict[str, FileChange] = {}
        self.basics = read_release_file(previous, BY_STEM["title.basics"])
        self.names = read_release_file(previous, BY_STEM["name.basics"])
        titles, people = self.basics.height, self.names.height
        # Never a series, which episodes point to, nor the newest title, whose id the next day's new titles follow
        # (IMDb never reuses an id).
        highest_title, highest_person = highest_id(self.basics, "tconst"), highest_id(self.names, "nconst")
        newest = pl.col("tconst").str.slice(2).cast(pl.Int64) == highest_title
        deletable = self.basics.filter(~pl.col("title_type").is_in(SERIES_TYPES) & ~newest)
        self.deleted = pick(self.rng("deleted"), deletable["tconst"], how_many(churn.deleted_titles, titles))
        self.survivors = self.basics.filter(~pl.col("tconst").is_in(self.deleted.implode()))
        self.series = self.survivors.filter(pl.col("title_type").is_in(SERIES_TYPES))["tconst"]

        new_titles = how_many(churn.new_titles, titles)
        self.new_names = new_ids("nm", highest_person, how_many(churn.new_names, people))
        ids = new_ids("tt", highest_title, new_titles)
        rng = self.rng("new title types")
        episode_mask = (rng.random(new_titles) < EPISODES_PER_TITLE) & (len(self.series) > 0)
        types = choose(rng, new_titles, NON_EPISODE_TYPES).set(pl.Series(episode_mask), "tvEpisode")
        series_mask = types.is_in(SERIES_TYPES).to_numpy()
        self.chunk = TitleChunk(ids, types, np.flatnonzero(episode_mask), np.flatnonzero(series_mask))
        # Ids drawn for crews, credits and known-for titles range over every id up to the newest.
        self.counts = Counts(
            {d.file_stem: 0 for d in DATASETS}
            | {"title.basics": highest_title + new_titles, "name.basics": highest_person + len(self.new_names)}
        )

    def rng(self, purpose: str) -> np.random.Generator:
        return random_stream(self.seed, f"release {purpose}", self.day)

    def new_rows(self, stem: str, frame: pl.DataFrame) -> pl.DataFrame:
        return as_text(frame, BY_STEM[stem])

    def per_new_title(self, previous_rows: int) -> int:
        """Rows of a file for the new titles, in the file's proportion of rows per title."""
        return round(len(self.chunk.ids) * previous_rows / max(1, self.basics.height))

    def without_deleted(self, stem: str, frame: pl.DataFrame) -> pl.DataFrame:
        key = BY_STEM[stem].primary_key[0]
        return frame.filter(~pl.col(key).is_in(self.deleted.implode()))

    def save(self, stem: str, frame: pl.DataFrame, inserted: int, changed: int, deleted: int) -> None:
        write_release_file(self.folder, BY_STEM[stem], frame)
        self.changes[stem] = FileChange(frame.height, inserted, changed, deleted)

    def write_name_basics(self) -> None:
        names = self.names
        alive = names.filter(pl.col("death_year") == NULL)["nconst"]
        dying = pick(self.rng("deaths"), alive, how_many(self.churn.deaths, names.height))
        names = replaced(names, "nconst", "death_year", dying, pl.Series([str(self.year)] * len(dying)))
        added = name_basics(0, len(self.new_names), self.rng("new names"), self.counts)
        added = self.new_rows("name.basics", added.with_columns(nconst=self.new_names))
        self.save("name.basics", pl.concat([names, added]), len(added), len(dying), 0)

    def write_title_basics(self) -> None:
        survivors = self.survivors["tconst"]
        retitled = pick(self.rng("retitles"), survivors, how_many(self.churn.retitles, self.basics.height))
        rng = self.rng("new titles")
        titles = phrases(rng, len(retitled))
        quirky = pl.Series(rng.random(len(retitled)) < QUIRKY_RETITLES)
        titles = pl.select(
            pl.when(pl.lit(quirky)).then(pl.lit(uniform(rng, len(retitled), TEXT_QUIRKS))).otherwise(pl.lit(titles))
        )[:, 0]
        regenred = pick(self.rng("genres"), survivors, how_many(self.churn.genre_edits, self.basics.height))
        genres = comma_lists(self.rng("new genres"), len(regenred), GENRES)

        basics = self.survivors
        old = basics.select("tconst", "primary_title", "genres")
        basics = replaced(basics, "tconst", "primary_title", retitled, titles)
        basics = replaced(basics, "tconst", "genres", regenred, genres)
        # A drawn value equal to the old one would be no edit: make it differ, so every edit is a change.
        basics = basics.with_columns(
            primary_title=pl.when(
                pl.col("tconst").is_in(retitled.implode()) & (pl.col("primary_title") == old["primary_title"])
            )
            .then(pl.concat_str("primary_title", pl.lit(" II")))
            .otherwise("primary_title"),
            genres=pl.when(pl.col("tconst").is_in(regenred.implode()) & (pl.col("genres") == old["genres"]))
            .then(pl.when(old["genres"] == "Documentary").then(pl.lit("Drama")).otherwise(pl.lit("Documentary")))
            .otherwise("genres"),
        )
        added = self.new_rows(
            "title.basics", title_basics(self.chunk, len(self.chunk.ids), self.rng("basics"), self.counts)
        )
        edited = pl.concat([retitled, regenred]).n_unique() if len(retitled) + len(regenred) else 0
        self.save("title.basics", pl.concat([basics, added]), len(added), edited, len(self.deleted))

    def write_title_crew(self) -> None:
        crew = read_release_file(self.previous, BY_STEM["title.crew"])
        kept = self.without_deleted("title.crew", crew)
        added = self.new_rows("title.crew", title_crew(self.chunk, len(self.chunk.ids), self.rng("crew"), self.counts))
        self.save("title.crew", pl.concat([kept, added]), len(added), 0, crew.height - kept.height)

    def write_title_episode(self) -> None:
        episodes = read_release_file(self.previous, BY_STEM["title.episode"])
        kept = self.without_deleted("title.episode", episodes)
        rng = self.rng("episodes")
        count = len(self.chunk.episodes)
        unnumbered = pl.Series(rng.random(count) < 0.15)
        added = pl.DataFrame(
            {
                "tconst": self.chunk.ids.gather(self.chunk.episodes),
                "parent_tconst": self.series.gather(rng.integers(0, max(1, len(self.series)), count)),
                "season_number": pl.Series(rng.geometric(0.4, count)).set(unnumbered, None),
                "episode_number": pl.Series(rng.integers(1, 31, count)).set(unnumbered, None),
            }
        )
        added = self.new_rows("title.episode", added)
        self.save("title.episode", pl.concat([kept, added]), len(added), 0, episodes.height - kept.height)

    def write_title_ratings(self) -> None:
        ratings = read_release_file(self.previous, BY_STEM["title.ratings"])
        kept = self.without_deleted("title.ratings", ratings)
        rng = self.rng("ratings")
        # Rows with a null quirk in place of a value keep it.
        votable = kept.filter((pl.col("num_votes") != NULL) & (pl.col("average_rating") != NULL))["tconst"]
        movers = pick(rng, votable, how_many(self.churn.rating_moves, ratings.height))
        moves = kept.filter(pl.col("tconst").is_in(movers.implode()))
        votes = moves["num_votes"].cast(pl.Int64).to_numpy()
        # New votes in proportion to the votes a title has: popular titles gain the most.
        gained = votes + 1 + rng.poisson(votes * 0.002)
        tenths = (moves["average_rating"].cast(pl.Float64) * 10).round().cast(pl.Int64).to_numpy()
        step = np.where(rng.random(len(movers)) < AVERAGE_MOVES, rng.choice([-1, 1], len(movers)), 0)
        tenths = np.clip(tenths + step, 10, 100)
        average = pl.select(pl.format("{}.{}", pl.lit(pl.Series(tenths // 10)), pl.lit(pl.Series(tenths % 10))))[:, 0]
        kept = replaced(kept, "tconst", "num_votes", movers, pl.Series(gained).cast(pl.String))
        kept = replaced(kept, "tconst", "average_rating", movers, average)
        rated = how_many(NEW_TITLES_RATED, len(self.chunk.ids))
        added = self.new_rows("title.ratings", title_ratings(self.chunk, rated, self.rng("new ratings"), self.counts))
        self.save("title.ratings", pl.concat([kept, added]), len(added), len(movers), ratings.height - kept.height)

    def write_title_akas(self) -> None:
        akas = read_release_file(self.previous, BY_STEM["title.akas"])
        kept = self.without_deleted("title.akas", akas)
        rows = self.per_new_title(akas.height)
        added = self.new_rows("title.akas", title_akas(self.chunk, rows, self.rng("akas"), self.counts))
        self.save("title.akas", pl.concat([kept, added]), len(added), 0, akas.height - kept.height)

    def write_title_principals(self) -> None:
        principals = read_release_file(self.previous, BY_STEM["title.principals"])
        kept = self.without_deleted("title.principals", principals)
        last = kept.group_by("tconst").agg(pl.col("ordering").cast(pl.Int64).max().alias("last")).sort("tconst")
        removed = pick_rows(self.rng("credits removed"), last, how_many(self.churn.credits_removed, last.height))
        kept = kept.join(
            removed.select("tconst", ordering=pl.col("last").cast(pl.String)), on=["tconst", "ordering"], how="anti"
        )
        credited = pick_rows(self.rng("credits added"), last, how_many(self.churn.credits_added, last.height))
        # The builder reads only the chunk's ids: the titles credited, one credit each, after their last ordering.
        no_positions = np.array([], dtype=np.int64)
        existing = TitleChunk(credited["tconst"], credited["tconst"], no_positions, no_positions)
        credits = title_principals(existing, credited.height, self.rng("credits"), self.counts).with_columns(
            tconst=credited["tconst"], ordering=credited["last"] + 1
        )
        rows = self.per_new_title(principals.height)
        new = title_principals(self.chunk, rows, self.rng("principals"), self.counts)
        # Each new person is credited on a new title (as many as the new titles' credits allow).
        credited_people = min(rows, len(self.new_names))
        new = new.with_columns(
            nconst=new["nconst"].scatter(np.arange(credited_people), self.new_names[:credited_people])
        )
        added = pl.concat([self.new_rows("title.principals", credits), self.new_rows("title.principals", new)])
        deleted = principals.height - kept.height
        self.save("title.principals", pl.concat([kept, added]), len(added), 0, deleted)


def release_folder(out: Path | str, release_date: date) -> Path:
    return Path(out) / RELEASES_DIR / release_date.isoformat()


def date_files(folder: Path, release_date: date) -> None:
    """Set the release's files' mtime to its date at midnight UTC: a ``file://`` mirror's Last-Modified."""
    stamp = datetime.combine(release_date, datetime.min.time(), tzinfo=UTC).timestamp()
    for dataset in DATASETS:
        os.utime(folder / dataset.file_name, (stamp, stamp))


def generate_releases(
    out: Path | str, rows: int, releases: int, seed: int = 0, churn: Churn | None = None, first: date = FIRST_DATE
) -> list[Path]:
    """A first release of ``rows`` rows and ``releases`` daily ones after it: their folders, oldest first."""
    if releases < 0:
        raise ValueError("releases must be zero or more")
    churn = churn or Churn()
    folders = [release_folder(out, first)]
    generate(folders[0], rows, seed)
    date_files(folders[0], first)
    for day in range(1, releases + 1):
        release_date = first + timedelta(days=day)
        folder = release_folder(out, release_date)
        folder.mkdir(parents=True, exist_ok=True)
        today = Day(folders[-1], folder, day, release_date, seed, churn)
        for build in (
            today.write_name_basics,
            today.write_title_basics,
            today.write_title_crew,
            today.write_title_episode,
            today.write_title_ratings,
            today.write_title_akas,
            today.write_title_principals,
        ):
            build()
        previous = (first + timedelta(days=day - 1)).isoformat()
        ReleaseRecord(release_date.isoformat(), previous, seed, churn, today.changes).write(folder / CHURN_RECORD)
        date_files(folder, release_date)
        folders.append(folder)
    return folders
