"""The sample generator writes IMDb's exact format, consistent keys, every quirk, and a truthful manifest.

Every check reads the real gzipped files back and judges them independently of the generator's code.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from imdb_assets.catalog import BY_STEM, DATASETS, Dataset, Kind
from imdb_dev.generator import REQUIRED, Manifest, Variety, generate, id_numbers

NULL = "\\N"
ID = {"t": re.compile(r"tt\d{7,}"), "n": re.compile(r"nm\d{7,}")}
VALUE_CHECKS = {
    Kind.INT: re.compile(r"\d+").fullmatch,
    Kind.BOOL: re.compile(r"[01]").fullmatch,
    Kind.RATING: re.compile(r"[1-9]\.\d|10\.0").fullmatch,
}


def read_lines(path: Path) -> list[str]:
    raw = gzip.decompress(path.read_bytes())
    assert raw.endswith(b"\n") and b"\r" not in raw
    return raw.decode("utf-8").split("\n")[:-1]


def rows(out: Path, stem: str) -> list[list[str]]:
    return [line.split("\t") for line in read_lines(out / BY_STEM[stem].file_name)[1:]]


def column(out: Path, stem: str, name: str) -> list[str]:
    index = [c.name for c in BY_STEM[stem].columns].index(name)
    return [row[index] for row in rows(out, stem)]


def is_json_strings(value: str) -> bool:
    try:
        parsed = json.loads(value)
    except ValueError:
        return False
    return isinstance(parsed, list) and all(isinstance(v, str) for v in parsed)


def sort_key(dataset: Dataset, fields: list[str]) -> tuple[str | int, ...]:
    """IMDb's order: ids compared as text, orderings as numbers."""
    key = [fields[[c.name for c in dataset.columns].index(k)] for k in dataset.primary_key]
    return tuple(int(v) if name == "ordering" else v for name, v in zip(dataset.primary_key, key, strict=True))


def classify(dataset: Dataset, fields: list[str], seen: set[tuple[str | int, ...]]) -> Variety | None:
    """Why a data line is malformed, judged only by the catalog; None when it is a valid row."""
    if len(fields) < len(dataset.columns):
        return Variety.TOO_FEW_FIELDS
    if len(fields) > len(dataset.columns):
        return Variety.TOO_MANY_FIELDS
    values = dict(zip((c.name for c in dataset.columns), fields, strict=True))
    if any(values[k] == NULL for k in dataset.primary_key):
        return Variety.NULL_KEY
    for c in dataset.columns:
        value = values[c.name]
        if value == NULL:
            continue
        if (c.kind in VALUE_CHECKS and not VALUE_CHECKS[c.kind](value)) or (
            c.kind is Kind.JSON_LIST and not is_json_strings(value)
        ):
            return Variety.BAD_VALUE
    key = sort_key(dataset, fields)
    if key in seen:
        return Variety.DUPLICATE_KEY
    seen.add(key)
    return None


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate(out, rows=2000, seed=7)
    return out


@pytest.fixture(scope="module")
def malformed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("malformed")
    return out, generate(out, rows=6000, seed=3, malformed_fraction=0.05)


def file_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first, again, other, some = (tmp_path / name for name in ("first", "again", "other", "some"))
    generate(first, rows=2000, seed=1, malformed_fraction=0.02)
    generate(again, rows=2000, seed=1, malformed_fraction=0.02)
    generate(other, rows=2000, seed=2, malformed_fraction=0.02)
    generate(some, rows=2000, seed=1, malformed_fraction=0.02, only=["title.episode", "name.basics"])

    assert len(file_bytes(first)) == 8
    assert file_bytes(first) == file_bytes(again)
    differing = [name for name, data in file_bytes(first).items() if file_bytes(other)[name] != data]
    assert sorted(differing) == sorted(file_bytes(first))
    # A file does not depend on which other files were written with it.
    assert set(file_bytes(some)) == {"title.episode.tsv.gz", "name.basics.tsv.gz", "manifest.json"}
    for name in ("title.episode.tsv.gz", "name.basics.tsv.gz"):
        assert (some / name).read_bytes() == (first / name).read_bytes()


def test_headers_and_field_counts_match_the_catalog(clean: Path) -> None:
    for dataset in DATASETS:
        lines = read_lines(clean / dataset.file_name)
        assert lines[0] == dataset.header
        assert {len(line.split("\t")) for line in lines[1:]} == {len(dataset.columns)}


def test_every_line_of_a_clean_set_is_valid_and_sorted_like_imdb(clean: Path) -> None:
    for dataset in DATASETS:
        seen: set[tuple[str | int, ...]] = set()
        data = rows(clean, dataset.file_stem)
        assert [classify(dataset, fields, seen) for fields in data] == [None] * len(data)
        keys = [sort_key(dataset, fields) for fields in data]
        assert keys == sorted(keys)
        for name in dataset.primary_key:
            if name != "ordering":
                prefix = "n" if dataset.file_stem == "name.basics" else "t"
                assert all(ID[prefix].fullmatch(v) for v in column(clean, dataset.file_stem, name))


def test_keys_are_consistent_across_files(clean: Path) -> None:
    titles = column(clean, "title.basics", "tconst")
    title_set, people = set(titles), set(column(clean, "name.basics", "nconst"))
    types = dict(zip(titles, column(clean, "title.basics", "title_type"), strict=True))

    assert column(clean, "title.crew", "tconst") == titles
    assert set(column(clean, "title.ratings", "tconst")) < title_set
    assert set(column(clean, "title.episode", "tconst")) == {t for t, kind in types.items() if kind == "tvEpisode"}
    assert {types[p] for p in column(clean, "title.episode", "parent_tconst")} <= {"tvSeries", "tvMiniSeries"}
    assert set(column(clean, "title.principals", "tconst")) <= title_set
    assert set(column(clean, "title.principals", "nconst")) <= people
    assert set(column(clean, "title.akas", "title_id")) <= title_set

    def listed(stem: str, name: str) -> set[str]:
        return {i for value in column(clean, stem, name) if value != NULL for i in value.split(",")}

    assert listed("title.crew", "directors") | listed("title.crew", "writers") <= people
    assert listed("name.basics", "known_for_titles") <= title_set
    assert len(listed("name.basics", "known_for_titles")) > 10  # references are spread, not one id


def test_every_quirk_of_real_data_is_present(clean: Path) -> None:
    text = {d.file_stem: read_lines(clean / d.file_name) for d in DATASETS}
    everything = "\n".join(line for lines in text.values() for line in lines)
    titles = column(clean, "title.basics", "primary_title")
    characters = [v for v in column(clean, "title.principals", "characters") if v != NULL]

    assert any(t.startswith('"') and t.count('"') == 2 for t in titles)  # "Weird Al" Yankovic
    assert any(t.startswith('"') and t.count('"') == 1 for t in titles)  # a lone leading quote
    assert any('"' in job for job in column(clean, "title.principals", "job"))
    assert '["Self - \\"Host\\""]' in characters
    assert all(is_json_strings(v) for v in characters)
    for needle in ("AC\\DC", "C:\\path", "backslash\\\t", "like\\ta tab", "Folder\\Name", "\x02"):
        assert needle in everything, needle
    for script in (
        r"[éàü]",
        r"[\u0370-\u03ff]",
        r"[\u0400-\u04ff]",
        r"[\u3040-\u30ff\u4e00-\u9fff]",
        r"[\U0001f300-\U0001faff]",
    ):
        assert re.search(script, everything), script
    assert "\\u" not in everything  # non-ASCII is raw UTF-8, never JSON-escaped
    assert max(len(t) for t in titles) >= 5000
    assert max(len(json.loads(v)) for v in characters) >= 50
    assert max(len(v.split(",")) for v in column(clean, "title.crew", "writers")) >= 50
    for dataset in DATASETS:
        for c in dataset.columns:
            if c.name not in dataset.primary_key and c.name not in REQUIRED:
                assert NULL in column(clean, dataset.file_stem, c.name), (dataset.file_stem, c.name)
    assert {"1.0", "10.0"} <= set(column(clean, "title.ratings", "average_rating"))


def test_manifest_names_exactly_the_malformed_lines(malformed: tuple[Path, Manifest]) -> None:
    out, manifest = malformed
    assert Manifest.read(out / "manifest.json") == manifest
    for dataset in DATASETS:
        entry = manifest.files[dataset.file_stem]
        lines = read_lines(out / dataset.file_name)
        seen: set[tuple[str | int, ...]] = set()
        found = {
            number: variety
            for number, line in enumerate(lines[1:], start=2)
            if (variety := classify(dataset, line.split("\t"), seen))
        }
        assert found == {m.line: m.variety for m in entry.malformed}, dataset.file_stem
        assert entry.data_rows == len(lines) - 1
        assert entry.valid_rows == entry.data_rows - len(entry.malformed)
        assert len(entry.malformed) == pytest.approx(0.05 * entry.data_rows, abs=1.5)
        if len(entry.malformed) >= len(Variety):
            expected = set(Variety) - ({Variety.BAD_VALUE} if dataset.file_stem == "title.crew" else set())
            assert set(found.values()) == expected, dataset.file_stem
        # A duplicate follows the valid first occurrence of its key.
        for m in entry.malformed:
            if m.variety is Variety.DUPLICATE_KEY:
                first = lines[m.line - 2].split("\t")
                assert sort_key(dataset, first) == sort_key(dataset, lines[m.line - 1].split("\t"))


def test_malformed_lines_leave_valid_keys_consistent(malformed: tuple[Path, Manifest]) -> None:
    out, manifest = malformed

    def valid(stem: str, name: str) -> list[str]:
        bad = {m.line for m in manifest.files[stem].malformed}
        index = [c.name for c in BY_STEM[stem].columns].index(name)
        return [fields[index] for n, fields in enumerate(rows(out, stem), start=2) if n not in bad]

    titles = valid("title.basics", "tconst")
    assert valid("title.crew", "tconst") == titles
    assert set(valid("title.principals", "nconst")) <= set(valid("name.basics", "nconst"))
    assert set(valid("title.episode", "parent_tconst")) <= set(titles)


def test_rows_split_like_imdb(tmp_path: Path) -> None:
    manifest = generate(tmp_path, rows=20_000, only=["title.ratings", "title.crew", "name.basics"])
    everything = generate(tmp_path / "all", rows=20_000).files
    share = sum(d.share_of_rows for d in DATASETS)
    for dataset in DATASETS:
        assert everything[dataset.file_stem].valid_rows == pytest.approx(
            20_000 * dataset.share_of_rows / share, abs=0.5
        )
    assert sum(f.valid_rows for f in everything.values()) == pytest.approx(20_000, abs=len(DATASETS))
    assert set(manifest.files) == {"title.ratings", "title.crew", "name.basics"}
    assert manifest.files["title.crew"].valid_rows == everything["title.basics"].valid_rows


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_ids_are_numbered_in_imdb_text_order(digits: int) -> None:
    """Ids longer than the padding sort between shorter ones: tt1000000 < tt10000000 < tt1000001."""
    for count in (1, 10**digits - 1, 10**digits, 10**digits + 1, 10**digits + 17, 10 ** (digits + 1) - 1):
        numbers = id_numbers(np.arange(count), count, digits)
        assert numbers.tolist() == sorted(range(1, count + 1), key=lambda i: f"{i:0{digits}d}")


def test_rejects_arguments_it_cannot_honour(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows"):
        generate(tmp_path, rows=10)
    with pytest.raises(ValueError, match="malformed_fraction"):
        generate(tmp_path, rows=2000, malformed_fraction=0.9)
    with pytest.raises(ValueError, match="unknown"):
        generate(tmp_path, rows=2000, only=["title.nope"])
