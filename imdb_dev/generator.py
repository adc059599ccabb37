"""Deterministic IMDb-format data at any scale, so every layer can be tested and benchmarked offline.

``generate`` writes the seven ``<file_stem>.tsv.gz`` files the way IMDb does (header, tabs, ``\\N`` for null,
no quoting, rows sorted by key with ids compared as text), with keys consistent across files, the quirks real
releases contain, and optionally malformed lines whose exact line numbers are recorded in ``manifest.json``.
Same arguments give byte-identical files; work is done in vectorised chunks so memory stays bounded.

    uv run python -m imdb_dev.generator --rows 5000000 --out data/sample --malformed-fraction 0.001

With ``--releases N`` it writes a first release and N daily ones after it, with known churn (``imdb_dev.releases``).
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import json
import sys
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path

import numpy as np
import polars as pl

from imdb_assets.catalog import BY_STEM, DATASETS, Dataset, Kind

MIN_ROWS = 1000  # below this the smallest files cannot hold one row of every quirk
TITLES_PER_CHUNK = 60_000  # ~1M rows across the six title files
NAMES_PER_CHUNK = 500_000
ID_DIGITS = 7  # tt0000001: IMDb pads ids to seven digits and lets them grow to eight
COMPRESS_LEVEL = 1  # gzip's fastest level: at its default it would be the generator's bottleneck
MAX_PENDING_CHUNKS = 4  # chunks waiting for compression: bounds memory when gzip falls behind
MANIFEST = "manifest.json"
TITLE_FILES = tuple(d.file_stem for d in DATASETS if d.file_stem != "name.basics")

# Columns the cross-file key rules depend on, so they never get a null quirk.
REQUIRED = frozenset({"title_type", "parent_tconst", "nconst"})
SERIES_TYPES = ("tvSeries", "tvMiniSeries")
# Value -> weight tables for choose(); a None value draws nulls.
Weights = dict[str | None, float]
NON_EPISODE_TYPES: Weights = {"movie": 25, "short": 20, "video": 12, "tvMovie": 8, "tvSeries": 9, "tvMiniSeries": 3}
NON_EPISODE_TYPES |= {"tvSpecial": 3, "tvShort": 2, "videoGame": 3, "tvPilot": 0.1}


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


GENRES = words(
    "Action Adult Adventure Animation Biography Comedy Crime Documentary Drama Family Fantasy Film-Noir Game-Show "
    "History Horror Music Musical Mystery News Reality-TV Romance Sci-Fi Short Sport Talk-Show Thriller War Western"
)
PROFESSIONS = words(
    "actor actress director writer producer soundtrack composer cinematographer editor miscellaneous "
    "music_department camera_department art_department stunts casting_director make_up_department "
    "production_manager assistant_director visual_effects animation_department"
)
FIRST_NAMES = words(
    "Fred Lauren Brigitte John Ingrid Humphrey Sophia Akira Zoë José Björn Chloé Ángel Dmitri Yuki Priya "
    "Kwame Mei Lars Aoife Mohammed Olga Pierre Grace Hiroshi Anna Carlos Fatima Ewan Nadia"
)
LAST_NAMES = words(
    "Astaire Bacall Bardot Kurosawa Bergman Bogart Loren Kowalski Müller Nakamura García Okafor Dubois "
    "Ivanova Smith Chen Rossi Novak Sørensen Kapoor Silva Andersson Murphy Haddad Costa Yamamoto Petrov"
)
TITLE_WORDS = words(
    "The Silent Last Red Lost Golden Broken Secret Dark Little Great Wild Endless Hidden Blue Crimson "
    "Midnight Summer Winter Forgotten"
)
TITLE_NOUNS = words(
    "River Night Garden Road Empire Clown Dance Train Kingdom Letter Storm House Island Promise Song "
    "Mirror Harbor Voyage Circus Frontier"
)
FOREIGN_TITLES = ("Le clown et ses chiens", "Die Reise", "La Sortie", "Δρόμος", "Ночной поезд", "夜の河")
CHARACTER_NAMES = ("Self", "Himself", "Herself", "The Moon", "Thief", "Young woman", "Man", "Narrator")
CATEGORIES: Weights = {"actor": 25, "actress": 18, "self": 12, "director": 10, "writer": 10, "producer": 8}
CATEGORIES |= {"cinematographer": 4, "composer": 4, "editor": 4, "archive_footage": 2, "casting_director": 1}
ACTING = ("actor", "actress", "self", "archive_footage")
JOBS: Weights = {None: 70, "producer": 8, "story": 5, "novel": 4, "play": 3, "co-director": 3, "screenplay": 4}
JOBS |= {"director of photography": 3}
REGIONS: Weights = {None: 20, "US": 20, "FR": 15, "GB": 10, "DE": 8, "RU": 6, "HU": 4, "BR": 4, "JP": 4, "XWW": 3}
LANGUAGES: Weights = {None: 80, "en": 8, "fr": 3, "ja": 3, "ru": 2, "de": 2, "es": 2}
AKA_TYPES: Weights = {None: 60, "original": 15, "imdbDisplay": 14, "alternative": 5, "dvd": 2, "working": 1}
AKA_TYPES |= {"festival": 1, "tv": 1, "video": 1, "alternative\x02tv": 0.3}
AKA_ATTRIBUTES: Weights = {None: 90, "literal English title": 2, "informal title": 2, "short title": 1}
AKA_ATTRIBUTES |= {"transliterated ISO-LATIN-1 title": 1, "reissue title": 1, "copyright title\x02premiere title": 0.3}

TEXT_QUIRKS = (
    '"Weird Al" Yankovic: The Ultimate Video Collection',  # leading quote, closed mid-field
    '"Lone leading quote',
    'Say "Hello" to story "Rip Van Winkle"',
    "AC\\DC: Let There Be Rock",
    "C:\\path\\to\\file",
    "Trailing backslash\\",
    "Looks like\\ta tab and\\na newline",  # backslash + letter, never a real tab or newline
    "Folder\\Name",  # contains the two characters \N without being null
    "Amélie à Montréal",
    "Ελληνική Ταινία",
    "Русское кино",
    "千と千尋の神隠し",
    "Emoji 🎬🍿 Night",
    " ".join(["Very long title"] * 400),
)
# Columns free text quirks go into, per file.
FREE_TEXT = {
    "name.basics": ("primary_name",),
    "title.akas": ("title",),
    "title.basics": ("primary_title", "original_title"),
    "title.principals": ("job",),
}


def json_array(values: Iterable[str]) -> str:
    """A JSON array as IMDb writes characters: no spaces, non-ASCII raw."""
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))


CHARACTER_QUIRKS = (
    json_array(['Self - "Host"']),
    json_array(['"Weird Al" Yankovic', "AC\\DC Fan", "Trailing\\"]),
    json_array(["Амели", "Ελένη", "千尋", "🎬 Fan"]),
    json_array(["Looks like\\ta tab"]),
    json_array(f"Character {i}" for i in range(1, 51)),
)
BAD_VALUES = {
    Kind.INT: ("abc", "12.5"),
    Kind.BOOL: ("2", "yes"),
    Kind.RATING: ("5.85", "x"),
    Kind.JSON_LIST: ('["unterminated', "[1,2]", "Self"),
}


class Variety(StrEnum):
    TOO_FEW_FIELDS = "too_few_fields"
    TOO_MANY_FIELDS = "too_many_fields"
    BAD_VALUE = "bad_value"  # a value that does not parse as its column's kind
    NULL_KEY = "null_key"
    DUPLICATE_KEY = "duplicate_key"  # same key as the line before it; the first occurrence is the valid one


@dataclass
class MalformedLine:
    line: int  # 1-based physical line; the header is line 1
    variety: Variety


@dataclass
class FileManifest:
    file: str
    data_rows: int  # lines after the header: valid rows plus malformed lines
    valid_rows: int
    malformed: list[MalformedLine] = field(default_factory=list)


@dataclass
class Manifest:
    rows: int
    seed: int
    malformed_fraction: float
    files: dict[str, FileManifest]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        raw = json.loads(path.read_text())
        files = {
            stem: FileManifest(
                f["file"],
                f["data_rows"],
                f["valid_rows"],
                [MalformedLine(m["line"], Variety(m["variety"])) for m in f["malformed"]],
            )
            for stem, f in raw["files"].items()
        }
        return cls(raw["rows"], raw["seed"], raw["malformed_fraction"], files)


@dataclass(frozen=True)
class Counts:
    """Valid rows per file; titles and people are the id spaces every reference points into."""

    rows: dict[str, int]

    @classmethod
    def plan(cls, total: int) -> Counts:
        share = sum(d.share_of_rows for d in DATASETS)
        return cls({d.file_stem: round(total * d.share_of_rows / share) for d in DATASETS})

    @property
    def titles(self) -> int:
        return self.rows["title.basics"]

    @property
    def people(self) -> int:
        return self.rows["name.basics"]

    def in_chunk(self, stem: str, start: int, end: int) -> int:
        """Rows of a per-title file that belong to titles start..end: exact totals over all chunks."""
        return (self.rows[stem] * end) // self.titles - (self.rows[stem] * start) // self.titles


def random_stream(seed: int, purpose: str, *position: int) -> np.random.Generator:
    """An independent stream per file and chunk, so a file's bytes never depend on which others are written."""
    return np.random.default_rng([seed, zlib.crc32(purpose.encode()), *position])


def id_numbers(ranks: np.ndarray, count: int, digits: int = ID_DIGITS) -> np.ndarray:
    """The numbers of the ids at these file positions, when ids 1..count are sorted as text like IMDb's.

    Padded ids sort numerically until they outgrow the padding: tt1000000 < tt10000000 < ... < tt10000009 <
    tt1000001. So from 10**(digits-1) on, each short id x is followed by its long ids 10x..10x+9.
    """
    low, high = 10 ** (digits - 1), 10**digits
    if count < high:
        return ranks + 1
    assert count < 10 * high, "ids longer than digits + 1 are not supported"
    full_blocks = (count - 9) // 10 - low + 1  # short ids with all ten long ids present
    partial = low + full_blocks
    partial_children = min(max(count - 10 * partial + 1, 0), 9)
    after_singles = ranks - (low - 1)
    in_blocks = after_singles < 11 * full_blocks
    block, offset = np.divmod(after_singles, 11)
    rest = after_singles - 11 * full_blocks
    return np.select(
        [
            after_singles < 0,
            in_blocks & (offset == 0),
            in_blocks,
            rest == 0,
            rest <= partial_children,
        ],
        [ranks + 1, low + block, 10 * (low + block) + offset - 1, partial, 10 * partial + rest - 1],
        partial + rest - partial_children,
    )


def ids(prefix: str, ranks: np.ndarray, count: int) -> pl.Series:
    numbers = pl.Series(id_numbers(ranks, count))
    return pl.select(pl.concat_str(pl.lit(prefix), pl.lit(numbers).cast(pl.String).str.zfill(ID_DIGITS)))[:, 0]


def choose(rng: np.random.Generator, n: int, weights: Weights) -> pl.Series:
    """Values drawn by weight (to 1/4096, at least once in 4096); a None key draws nulls."""
    values, slots = draw_table(tuple(weights.items()))
    return values.gather(slots[rng.integers(0, len(slots), n)])


@functools.cache
def draw_table(weights: tuple[tuple[str | None, float], ...]) -> tuple[pl.Series, np.ndarray]:
    """Each value repeated in proportion to its weight: a uniform draw of a slot is a weighted draw, faster
    than ``Generator.choice(p=...)``."""
    p = np.array([w for _, w in weights]) / sum(w for _, w in weights)
    slots = np.repeat(np.arange(len(p), dtype=np.uint32), np.maximum(1, np.rint(p * 4096)).astype(np.int64))
    return pl.Series([v for v, _ in weights], dtype=pl.String), slots


def uniform(rng: np.random.Generator, n: int, values: Iterable[str]) -> pl.Series:
    return choose(rng, n, dict.fromkeys(values, 1.0))


@functools.cache
def combinations(words: tuple[str, ...], most: int) -> pl.Series:
    return pl.Series([",".join(c) for k in range(1, most + 1) for c in itertools.combinations(words, k)])


def comma_lists(rng: np.random.Generator, n: int, words: Iterable[str], most: int = 3) -> pl.Series:
    """Lists of 1..most distinct words in alphabetical order, like IMDb's genres."""
    vocabulary = combinations(tuple(sorted(words)), most)
    return vocabulary.gather(rng.integers(0, len(vocabulary), n))


def id_lists(rng: np.random.Generator, n: int, prefix: str, count: int, lengths: list[float]) -> pl.Series:
    """Comma lists of existing ids, null when empty; lengths are the weights of 0, 1, 2, ... ids."""
    length = rng.choice(len(lengths), n, p=np.array(lengths) / sum(lengths))
    parts = [
        pl.when(pl.lit(length) > j).then(pl.lit(ids(prefix, rng.integers(0, count, n), count)))
        for j in range(len(lengths) - 1)
    ]
    joined = pl.concat_str(parts, separator=",", ignore_nulls=True)
    return pl.select(pl.when(pl.lit(length) > 0).then(joined))[:, 0]


def nulls(rng: np.random.Generator, values: np.ndarray | pl.Series, share: float) -> pl.Series:
    return pl.Series(values).set(pl.Series(rng.random(len(values)) < share), None)


def phrases(rng: np.random.Generator, n: int) -> pl.Series:
    return pl.select(
        pl.concat_str(pl.lit(uniform(rng, n, TITLE_WORDS)), pl.lit(uniform(rng, n, TITLE_NOUNS)), separator=" ")
    )[:, 0]


@dataclass(frozen=True)
class TitleChunk:
    """A run of titles in file order and the facts every title file derives from them."""

    ids: pl.Series
    types: pl.Series
    episodes: np.ndarray  # positions in the chunk of the tvEpisode titles
    series: np.ndarray  # positions in the chunk of the tvSeries / tvMiniSeries titles

    @classmethod
    def make(cls, index: int, start: int, end: int, counts: Counts, seed: int) -> TitleChunk:
        """Exactly the planned share of episodes, each in a chunk that has a series for it to belong to."""
        rng = random_stream(seed, "titles", index)
        n = end - start
        episode_mask = np.zeros(n, dtype=bool)
        episode_mask[rng.choice(n, counts.in_chunk("title.episode", start, end), replace=False)] = True
        types = choose(rng, n, NON_EPISODE_TYPES).set(pl.Series(episode_mask), "tvEpisode")
        series_mask = types.is_in(SERIES_TYPES).to_numpy()
        if episode_mask.any() and not series_mask.any():
            first_other = int(np.argmin(episode_mask))
            types = types.scatter(first_other, "tvSeries")
            series_mask[first_other] = True
        return cls(
            ids("tt", np.arange(start, end), counts.titles),
            types,
            np.flatnonzero(episode_mask),
            np.flatnonzero(series_mask),
        )


def per_title(rng: np.random.Generator, chunk: TitleChunk, rows: int) -> tuple[pl.Series, np.ndarray]:
    """Spread rows over the chunk's titles at random: the title id and 1-based ordering of each row."""
    per = np.bincount(rng.integers(0, len(chunk.ids), rows), minlength=len(chunk.ids))
    positions = np.repeat(np.arange(len(chunk.ids)), per)
    ordering = np.arange(rows) - np.repeat(np.cumsum(per) - per, per) + 1
    return chunk.ids.gather(positions), ordering


def title_basics(chunk: TitleChunk, rows: int, rng: np.random.Generator, counts: Counts) -> pl.DataFrame:
    start_year = rng.integers(1890, 2026, rows)
    not_series = ~chunk.types.is_in(SERIES_TYPES).to_numpy()
    primary = phrases(rng, rows)
    original = pl.select(
        pl.when(pl.lit(rng.random(rows) < 0.8))
        .then(pl.lit(primary))
        .otherwise(pl.lit(uniform(rng, rows, FOREIGN_TITLES)))
    )[:, 0]
    return pl.DataFrame(
        {
            "tconst": chunk.ids,
            "title_type": chunk.types,
            "primary_title": primary,
            "original_title": original,
            "is_adult": (rng.random(rows) < 0.02).astype(np.int8),
            "start_year": nulls(rng, start_year, 0.1),
            "end_year": pl.Series(start_year + rng.integers(0, 15, rows)).set(
                pl.Series(not_series | (rng.random(rows) < 0.4)), None
            ),
            "runtime_minutes": nulls(rng, rng.integers(1, 200, rows), 0.4),
            "genres": nulls(rng, comma_lists(rng, rows, GENRES), 0.1),
        }
    )


def title_crew(chunk: TitleChunk, rows: int, rng: np.random.Generator, counts: Counts) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "tconst": chunk.ids,
            "directors": id_lists(rng, rows, "nm", counts.people, [20, 70, 10]),
            "writers": id_lists(rng, rows, "nm", counts.people, [40, 35, 15, 10]),
        }
    )


def title_episode(chunk: TitleChunk, rows: int, rng: np.random.Generator, counts: Counts) -> pl.DataFrame:
    unnumbered = pl.Series(rng.random(rows) < 0.15)
    return pl.DataFrame(
        {
            "tconst": chunk.ids.gather(chunk.episodes),
            "parent_tconst": chunk.ids.gather(rng.choice(chunk.series, rows)),
            "season_number": pl.Series(rng.geometric(0.4, rows)).set(unnumbered, None),
            "episode_number": pl.Series(rng.integers(1, 31, rows)).set(unnumbered, None),
        }
    )


def title_ratings(chunk: TitleChunk, rows: int, rng: np.random.Generator, counts: Counts) -> pl.DataFrame:
    rated = np.sort(rng.choice(len(chunk.ids), rows, replace=False))
    tenths = pl.Series(np.clip(np.rint(rng.normal(66, 12, rows)), 10, 100).astype(np.int64))
    rating = pl.select(pl.format("{}.{}", pl.lit(tenths) // 10, pl.lit(tenths) % 10))[:, 0]
    votes = np.minimum(5 + rng.lognormal(3, 1.8, rows), 3_000_000).astype(np.int64)
    return pl.DataFrame({"tconst": chunk.ids.gather(rated), "average_rating": rating, "num_votes": votes})


def title_akas(chunk: TitleChunk, rows: int, rng: np.random.Generator, counts: Counts) -> pl.DataFrame:
    title_id, ordering = per_title(rng, chunk, rows)
    types = choose(rng, rows, AKA_TYPES)
    return pl.DataFrame(
        {
            "title_id": title_id,
            "ordering": ordering,
            "title": phrases(rng, rows),
            "region": choose(rng, rows, REGIONS),
            "language": choose(rng, rows, LANGUAGES),
            "types": types,
            "attributes": choose(rng, rows, AKA_ATTRIBUTES),
            "is_original_title": (types == "original").fill_null(False).cast(pl.Int8),
        }
    )


def title_principals(chunk: TitleChunk, rows: int, rng: np.random.Generator, counts: Counts) -> pl.DataFrame:
    tconst, ordering = per_title(rng, chunk, rows)
    category = choose(rng, rows, CATEGORIES)
    acting = category.is_in(ACTING)
    first, second = (uniform(rng, rows, CHARACTER_NAMES) for _ in range(2))
    two = pl.lit(rng.random(rows) < 0.1)
    characters = pl.when(pl.lit(acting) & pl.lit(rng.random(rows) > 0.1)).then(
        pl.format(
            '["{}{}"]', pl.lit(first), pl.when(two).then(pl.format('","{}', pl.lit(second))).otherwise(pl.lit(""))
        )
    )
    return pl.DataFrame(
        {
            "tconst": tconst,
            "ordering": ordering,
            "nconst": ids("nm", rng.integers(0, counts.people, rows), counts.people),
            "category": category,
            "job": pl.select(pl.when(~pl.lit(acting)).then(pl.lit(choose(rng, rows, JOBS))))[:, 0],
            "characters": pl.select(characters)[:, 0],
        }
    )


def name_basics(start: int, end: int, rng: np.random.Generator, counts: Counts) -> pl.DataFrame:
    rows = end - start
    birth = rng.integers(1850, 2011, rows)
    unknown_birth = rng.random(rows) < 0.55
    death = np.minimum(birth + rng.integers(20, 96, rows), 2025)
    name = pl.concat_str(pl.lit(uniform(rng, rows, FIRST_NAMES)), pl.lit(uniform(rng, rows, LAST_NAMES)), separator=" ")
    return pl.DataFrame(
        {
            "nconst": ids("nm", np.arange(start, end), counts.people),
            "primary_name": pl.select(name)[:, 0],
            "birth_year": pl.Series(birth).set(pl.Series(unknown_birth), None),
            "death_year": pl.Series(death).set(pl.Series(unknown_birth | (rng.random(rows) < 0.8)), None),
            "primary_profession": nulls(rng, comma_lists(rng, rows, PROFESSIONS), 0.15),
            "known_for_titles": id_lists(rng, rows, "tt", counts.titles, [15, 20, 15, 15, 35]),
        }
    )


TitleBuilder = Callable[[TitleChunk, int, np.random.Generator, Counts], pl.DataFrame]
TITLE_BUILDERS: dict[str, TitleBuilder] = {
    "title.akas": title_akas,
    "title.basics": title_basics,
    "title.crew": title_crew,
    "title.episode": title_episode,
    "title.principals": title_principals,
    "title.ratings": title_ratings,
}


def quirks(dataset: Dataset, counts: Counts) -> list[dict[str, str | None]]:
    """Rows of overrides placed at fixed positions in every chunk: each quirk real data has, a few times."""
    rows: list[dict[str, str | None]] = [
        dict.fromkeys(FREE_TEXT[dataset.file_stem], text) for text in TEXT_QUIRKS if dataset.file_stem in FREE_TEXT
    ]
    rows += [{c.name: None} for c in dataset.columns if c.name not in dataset.primary_key and c.name not in REQUIRED]
    many_people = ",".join(ids("nm", np.arange(min(60, counts.people)), counts.people))
    special: dict[str, dict[str, Sequence[str]]] = {
        "title.principals": {"characters": CHARACTER_QUIRKS, "job": ['writer: "The Novel"']},
        "title.crew": {"writers": [many_people], "directors": [many_people]},
        "title.akas": {"types": ["alternative\x02dvd\x02video"], "attributes": ['"literal" title\x02short title']},
        "title.ratings": {"average_rating": ["1.0", "10.0"]},
    }
    rows += [{column: value} for column, values in special.get(dataset.file_stem, {}).items() for value in values]
    return rows


def with_quirks(frame: pl.DataFrame, overrides: list[dict[str, str | None]]) -> pl.DataFrame:
    """Override cells at positions spread evenly over the chunk; each row of overrides gets its own line."""
    overrides = overrides[: frame.height]
    if not overrides:
        return frame
    positions = [(2 * k + 1) * frame.height // (2 * len(overrides)) for k in range(len(overrides))]
    changed = []
    for column in frame.columns:
        hits = [(p, o[column]) for p, o in zip(positions, overrides, strict=True) if column in o]
        if hits:
            where, values = zip(*hits, strict=True)
            changed.append(frame[column].clone().scatter(list(where), pl.Series(values, dtype=frame[column].dtype)))
    return frame.with_columns(changed)


class Compressor:
    """Gzips chunks on one worker thread, in submission order, so generation overlaps compression."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: deque[Future[object]] = deque()

    def submit(self, task: Callable[[], object]) -> None:
        """Run ``task`` after those submitted before; its result is dropped."""
        while len(self.pending) >= MAX_PENDING_CHUNKS:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(task))

    def close(self) -> None:
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()


class FileWriter:
    """One ``.tsv.gz``: quirks, malformed lines and their line numbers, deterministic gzip (mtime 0)."""

    def __init__(
        self, out_dir: Path, dataset: Dataset, counts: Counts, seed: int, fraction: float, compressor: Compressor
    ):
        self.dataset, self.compressor = dataset, compressor
        self.planned = counts.rows[dataset.file_stem]
        self.malformed_planned = round(self.planned * fraction / (1 - fraction))
        self.rng = random_stream(seed, f"{dataset.file_stem} malformed")
        self.quirks = quirks(dataset, counts)
        self.varieties = [v for v in Variety if v is not Variety.BAD_VALUE or self.typed_columns()]
        self.manifest = FileManifest(dataset.file_name, 0, 0)
        self.file = (out_dir / dataset.file_name).open("wb")
        self.gzip = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 31)
        self.compressor.submit(lambda: self.file.write(self.gzip.compress(dataset.header.encode() + b"\n")))

    def typed_columns(self) -> list[int]:
        return [i for i, c in enumerate(self.dataset.columns) if c.kind in BAD_VALUES]

    def write(self, frame: pl.DataFrame) -> None:
        frame = with_quirks(frame.select([c.name for c in self.dataset.columns]), self.quirks)
        buffer = io.BytesIO()
        frame.write_csv(buffer, separator="\t", quote_style="never", null_value="\\N", include_header=False)
        data = buffer.getvalue()
        before = self.manifest.valid_rows
        malformed = (self.malformed_planned * (before + frame.height)) // self.planned - (
            self.malformed_planned * before
        ) // self.planned
        if malformed:
            data = self.add_malformed(data, frame.height, malformed)
        self.manifest.valid_rows += frame.height
        self.manifest.data_rows += frame.height + malformed
        self.compressor.submit(lambda: self.file.write(self.gzip.compress(data)))

    def add_malformed(self, data: bytes, rows: int, count: int) -> bytes:
        """Insert a corrupted copy right after each of ``count`` random rows, recording its line number."""
        line_ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
        sources = np.sort(self.rng.choice(rows, count, replace=False))
        view, pieces, previous = memoryview(data), [], 0
        for k, source in enumerate(sources.tolist()):
            start = line_ends[source - 1] + 1 if source else 0
            end = line_ends[source] + 1
            variety = self.varieties[len(self.manifest.malformed) % len(self.varieties)]
            pieces += [view[previous:end], self.corrupt(bytes(view[start : end - 1]), variety), b"\n"]
            previous = end
            self.manifest.malformed.append(MalformedLine(2 + self.manifest.data_rows + source + k + 1, variety))
        pieces.append(view[previous:])
        return b"".join(pieces)

    def corrupt(self, line: bytes, variety: Variety) -> bytes:
        fields = line.split(b"\t")
        n = len(self.manifest.malformed)
        key_columns = [i for i, c in enumerate(self.dataset.columns) if c.name in self.dataset.primary_key]
        if variety is Variety.TOO_FEW_FIELDS:
            fields = fields[:-1]
        elif variety is Variety.TOO_MANY_FIELDS:
            fields.append(fields[-1])
        elif variety is Variety.BAD_VALUE:
            column = self.typed_columns()[n % len(self.typed_columns())]
            bad = BAD_VALUES[self.dataset.columns[column].kind]
            fields[column] = bad[n // len(self.varieties) % len(bad)].encode()
        elif variety is Variety.NULL_KEY:
            fields[key_columns[n % len(key_columns)]] = b"\\N"
        else:  # a later line with the same key and different values: keeping the first one matters
            fields = [f if i in key_columns else b"\\N" for i, f in enumerate(fields)]
        return b"\t".join(fields)

    def close(self) -> FileManifest:
        def finish() -> None:
            self.file.write(self.gzip.flush())
            self.file.close()

        self.compressor.submit(finish)
        return self.manifest


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """Near-equal ranges, so no chunk is too small to hold its share of every file."""
    parts = max(1, -(-total // size))
    bounds = [total * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def generate(
    out_dir: Path | str, rows: int, seed: int = 0, malformed_fraction: float = 0.0, only: Iterable[str] | None = None
) -> Manifest:
    """Write the IMDb files (all seven, or ``only`` these stems) and ``manifest.json`` into ``out_dir``.

    ``rows`` is the total of valid rows over all seven files, split like IMDb's release; malformed lines come
    on top. A file's content does not depend on which other files are written.
    """
    if rows < MIN_ROWS:
        raise ValueError(f"rows must be at least {MIN_ROWS}")
    if not 0 <= malformed_fraction <= 0.5:
        raise ValueError("malformed_fraction must be between 0 and 0.5")
    stems = list(BY_STEM) if only is None else list(only)
    if unknown := set(stems) - set(BY_STEM):
        raise ValueError(f"unknown files: {sorted(unknown)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = Counts.plan(rows)
    compressor = Compressor()
    writers = {
        stem: FileWriter(out_dir, BY_STEM[stem], counts, seed, malformed_fraction, compressor)
        for stem in BY_STEM
        if stem in stems
    }
    try:
        if "name.basics" in writers:
            for index, (start, end) in enumerate(chunks(counts.people, NAMES_PER_CHUNK)):
                rng = random_stream(seed, "name.basics", index)
                writers["name.basics"].write(name_basics(start, end, rng, counts))
        title_writers = {stem: writers[stem] for stem in TITLE_FILES if stem in writers}
        if title_writers:
            for index, (start, end) in enumerate(chunks(counts.titles, TITLES_PER_CHUNK)):
                chunk = TitleChunk.make(index, start, end, counts, seed)
                for stem, writer in title_writers.items():
                    rng = random_stream(seed, stem, index)
                    writer.write(TITLE_BUILDERS[stem](chunk, counts.in_chunk(stem, start, end), rng, counts))
        files = {stem: writer.close() for stem, writer in writers.items()}
    finally:
        compressor.close()
    manifest = Manifest(rows, seed, malformed_fraction, files)
    manifest.write(out_dir / MANIFEST)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="valid rows over all seven files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--malformed-fraction", type=float, default=0.0)
    parser.add_argument("--only", type=lambda s: s.split(","), help="comma separated file stems")
    parser.add_argument(
        "--releases", type=int, help="also write N daily releases after the first, each in <out>/releases/<date>/"
    )
    parser.add_argument("--first-date", type=date.fromisoformat, help="the first release's date (YYYY-MM-DD)")
    parser.add_argument("--churn", default="", help='daily churn knobs over their defaults: "rating_moves=0.2,..."')
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.releases is not None:
        # Imported here: the releases module builds on this one's builders.
        from imdb_dev import releases

        if args.malformed_fraction or args.only:
            parser.error("--releases writes all seven files without malformed lines")
        try:
            churn = releases.Churn.parse(args.churn)
        except ValueError as error:
            parser.error(str(error))
        folders = releases.generate_releases(
            args.out, args.rows, args.releases, args.seed, churn, args.first_date or releases.FIRST_DATE
        )
        seconds = time.perf_counter() - began
        print(f"{len(folders)} releases in {seconds:.1f} s -> {folders[0].parent}", file=sys.stderr)
        return
    manifest = generate(args.out, args.rows, args.seed, args.malformed_fraction, args.only)
    seconds = time.perf_counter() - began
    lines = sum(f.data_rows for f in manifest.files.values())
    print(f"{lines:,} rows in {seconds:.1f} s ({lines / seconds:,.0f} rows/s) -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
