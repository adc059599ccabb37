"""The streaming parser on small hand-built files: byte-exact text, every reject reason with its line number and raw
text, duplicate keys within and across blocks (ordered and unordered files), refused files that keep the previous
frame, and agreement with the independent reference reader on real IMDb excerpts."""

from __future__ import annotations

import gzip
import json
import random
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from imdb_assets import parse
from imdb_assets.catalog import BY_STEM, DATASETS, Dataset
from imdb_assets.parse import LINE_COLUMN, ParseError, ParseResult, parse_file
from tests import reference

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "imdb-sample"
BASICS = BY_STEM["title.basics"]
RATINGS = BY_STEM["title.ratings"]
PRINCIPALS = BY_STEM["title.principals"]
AKAS = BY_STEM["title.akas"]
DUPLICATE = "duplicate key: an earlier line has the same key"


def write_gz(path: Path, dataset: Dataset, lines: list[str | bytes], *, trailing_newline: bool = True) -> Path:
    """A gzipped TSV with the dataset's header and ``lines`` as given (str is UTF-8 encoded, bytes kept as is)."""
    body = b"\n".join([dataset.header.encode(), *(x.encode() if isinstance(x, str) else x for x in lines)])
    path.write_bytes(gzip.compress(body + (b"\n" if trailing_newline else b"")))
    return path


class Parsed:
    """One parse_file call in a folder: the result, the frame's rows in file order, and the rejects by line."""

    def __init__(self, folder: Path, dataset: Dataset, raw: Path, max_reject_fraction: float = 1.0) -> None:
        self.dataset = dataset
        self.parquet = folder / "out" / f"{dataset.table}.parquet"
        self.rejects_path = folder / "out" / f"{dataset.table}.rejects.tsv"
        self.result = parse_file(
            dataset,
            raw,
            self.parquet,
            self.rejects_path,
            source_sha256="abc123",
            max_reject_fraction=max_reject_fraction,
        )

    @property
    def frame(self) -> pl.DataFrame:
        return pl.read_parquet(self.parquet)

    @property
    def rows(self) -> list[dict]:
        return self.frame.sort(LINE_COLUMN).to_dicts()

    def column(self, name: str) -> list:
        return [row[name] for row in self.rows]

    @property
    def rejects(self) -> dict[int, tuple[str, bytes]]:
        return read_rejects(self.rejects_path)


def read_rejects(path: Path) -> dict[int, tuple[str, bytes]]:
    """line -> (reason, raw bytes). Only \\n ends a rejects line, so a raw \\r stays inside its line."""
    lines = path.read_bytes().split(b"\n")
    assert lines[0] == b"line\treason\traw"
    assert lines[-1] == b"", "the rejects file ends with a newline"
    out = {}
    for line in lines[1:-1]:
        number, reason, raw = line.split(b"\t", 2)
        assert int(number) not in out, f"line {number} rejected twice"
        out[int(number)] = (reason.decode(), raw)
    return out


@pytest.fixture
def block_bytes(request, monkeypatch) -> int:
    monkeypatch.setattr(parse, "BLOCK_BYTES", request.param)
    return request.param


# Byte exactness.

QUIRKY_BASICS = [
    'tt0000001\tmovie\t"Leading quote\tAC\\DC\t0\t1999\t\\N\t90\tDrama,Comedy',
    "tt0000002\tshort\ttrailing backslash\\\tthe two characters \\t here\t1\t2000\t2001\t\\N\t\\N",
    "tt0000003\tmovie\tAmélie: 東京物語 🎬\t\t0\t\\N\t\\N\t\\N\tDocumentary",
    "tt0000004\tmovie\tmid\rcarriage\tends with cr\r\t0\t2001\t\\N\t7\tDrama\r",
    "tt0000005\tvideo\t\t\\N\t0\t-5\t\\N\t0\t",
    'tt0000006\tmovie\t"quoted"\t""\t0\t2002\t\\N\t\\N\tNews',
]


@pytest.mark.parametrize("block_bytes", [parse.BLOCK_BYTES, 64, 1], indirect=True)
def test_text_is_byte_exact(tmp_path, block_bytes):
    raw = write_gz(tmp_path / "basics.tsv.gz", BASICS, QUIRKY_BASICS)
    parsed = Parsed(tmp_path, BASICS, raw)

    assert parsed.result.rows == 6 and parsed.result.rejects == 0 and parsed.result.lines == 6
    assert parsed.rejects == {}
    assert parsed.rows == [
        {
            "tconst": "tt0000001",
            "title_type": "movie",
            "primary_title": '"Leading quote',
            "original_title": "AC\\DC",
            "is_adult": False,
            "start_year": 1999,
            "end_year": None,
            "runtime_minutes": 90,
            "genres": ["Drama", "Comedy"],
            LINE_COLUMN: 2,
        },
        {
            "tconst": "tt0000002",
            "title_type": "short",
            "primary_title": "trailing backslash\\",
            "original_title": "the two characters \\t here",
            "is_adult": True,
            "start_year": 2000,
            "end_year": 2001,
            "runtime_minutes": None,
            "genres": None,
            LINE_COLUMN: 3,
        },
        {
            "tconst": "tt0000003",
            "title_type": "movie",
            "primary_title": "Amélie: 東京物語 🎬",
            "original_title": "",  # an empty field is an empty string, not null
            "is_adult": False,
            "start_year": None,
            "end_year": None,
            "runtime_minutes": None,
            "genres": ["Documentary"],
            LINE_COLUMN: 4,
        },
        {
            "tconst": "tt0000004",
            "title_type": "movie",
            "primary_title": "mid\rcarriage",
            "original_title": "ends with cr\r",
            "is_adult": False,
            "start_year": 2001,
            "end_year": None,
            "runtime_minutes": 7,
            "genres": ["Drama\r"],  # a \r before the newline belongs to the last field
            LINE_COLUMN: 5,
        },
        {
            "tconst": "tt0000005",
            "title_type": "video",
            "primary_title": "",
            "original_title": None,
            "is_adult": False,
            "start_year": -5,
            "end_year": None,
            "runtime_minutes": 0,
            "genres": [""],  # an empty list field is one empty element, as "".split(",") is
            LINE_COLUMN: 6,
        },
        {
            "tconst": "tt0000006",
            "title_type": "movie",
            "primary_title": '"quoted"',
            "original_title": '""',
            "is_adult": False,
            "start_year": 2002,
            "end_year": None,
            "runtime_minutes": None,
            "genres": ["News"],
            LINE_COLUMN: 7,
        },
    ]
    expected = reference.read(BASICS, raw)
    assert [tuple(r[c.name] for c in BASICS.columns) for r in parsed.rows] == list(expected.rows.values())


@pytest.mark.parametrize("block_bytes", [parse.BLOCK_BYTES, 40], indirect=True)
def test_byte_order_mark_at_the_start_of_a_line_is_kept(tmp_path, block_bytes):
    """A value that starts with U+FEFF, on the first line of a block, must not lose it (CSV readers strip BOMs)."""
    lines = ["\ufefftt0000001\t5.8\t10", "tt0000001\t6.0\t20", "\ufefftt0000002\t7.0\t30"]
    parsed = Parsed(tmp_path, RATINGS, write_gz(tmp_path / "r.tsv.gz", RATINGS, lines))
    assert parsed.column("tconst") == ["\ufefftt0000001", "tt0000001", "\ufefftt0000002"]
    assert parsed.rejects == {}


def test_x02_lists_and_composite_keys(tmp_path):
    lines = [
        "tt0000001\t1\tCarmencita\tHU\t\\N\timdbDisplay\t\\N\t0",
        "tt0000001\t2\tKarmensita\tRU\tru\talternative\x02working\tliteral title\x02short\t1",
        "tt0000001\t2\tsame key\t\\N\t\\N\t\\N\t\\N\t0",
        "tt0000002\t1\tkey ok\t\\N\t\\N\t\\N\t\\N\t\\N",
        "tt0000002\t\\N\tnull ordering\t\\N\t\\N\t\\N\t\\N\t0",
    ]
    parsed = Parsed(tmp_path, AKAS, write_gz(tmp_path / "akas.tsv.gz", AKAS, lines))
    assert [
        (r["title_id"], r["ordering"], r["types"], r["attributes"], r["is_original_title"]) for r in parsed.rows
    ] == [
        ("tt0000001", 1, ["imdbDisplay"], None, False),
        ("tt0000001", 2, ["alternative", "working"], ["literal title", "short"], True),
        ("tt0000002", 1, None, None, None),
    ]
    assert parsed.rejects == {
        4: (DUPLICATE, lines[2].encode()),
        6: ("ordering: key is null", lines[4].encode()),
    }


# Every reject reason, with its line number and raw text.


def test_each_reject_reason_in_title_basics(tmp_path):
    good = "tt{:07d}\tmovie\tTitle {}\tTitle {}\t0\t2000\t\\N\t90\tDrama"
    lines: list[str | bytes] = [
        good.format(1, 1, 1),  # 2
        "tt0000002\tmovie\tToo few\t0\t2000\t\\N\t90\tDrama",  # 3: 8 fields
        "tt0000003\tmovie\tToo many\tToo many\t0\t2000\t\\N\t90\tDrama\textra",  # 4: 10 fields
        "",  # 5: empty line in the middle
        "tt0000005\tmovie\tBad int\tBad int\t0\tabc\t\\N\t90\tDrama",  # 6
        "tt0000006\tmovie\tBad int\tBad int\t0\t2000\t12.5\t90\tDrama",  # 7
        "tt0000007\tmovie\tBad int\tBad int\t0\t2000\t\\N\t+4\tDrama",  # 8
        "tt0000008\tmovie\tBad bool\tBad bool\t2\t2000\t\\N\t90\tDrama",  # 9
        "\\N\tmovie\tNull key\tNull key\t0\t2000\t\\N\t90\tDrama",  # 10
        good.format(11, 11, 11),  # 11
        "tt0000011\tmovie\tSecond tt11\tSecond\t1\t1900\t\\N\t1\tShort",  # 12: duplicate of line 11
        b"tt0000013\tmovie\tBad \xff\xfe UTF-8\tx\t0\t2000\t\\N\t90\tDrama",  # 13
        good.format(14, 14, 14),  # 14
        "tt0000015\tmovie\tOverflow\tOverflow\t0\t2000\t\\N\t2147483648\tDrama",  # 15: beyond int32
        "tt0000016\tmovie\tEmpty int\tEmpty int\t0\t\t\\N\t90\tDrama",  # 16
        "tt0000017\tmovie\tMax int\tMax int\t0\t-2147483648\t\\N\t2147483647\tDrama",  # 17
    ]
    raw = write_gz(tmp_path / "basics.tsv.gz", BASICS, lines)
    parsed = Parsed(tmp_path, BASICS, raw)

    raw_of = {n: (x.encode() if isinstance(x, str) else x) for n, x in enumerate(lines, start=2)}
    rejects = parsed.rejects
    assert sorted(rejects) == [3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 15, 16]
    assert {n: reason for n, (reason, _) in rejects.items()} == {
        3: "expected 9 fields, found 8",
        4: "expected 9 fields, found 10",
        5: "expected 9 fields, found 1",
        6: "start_year: 'abc' is not an integer",
        7: "end_year: '12.5' is not an integer",
        8: "runtime_minutes: '+4' is not an integer",
        9: "is_adult: '2' is not a boolean (0 or 1)",
        10: "tconst: key is null",
        12: DUPLICATE,
        13: "not valid UTF-8",
        15: "runtime_minutes: '2147483648' is not an integer",
        16: "start_year: '' is not an integer",
    }
    for n, (_, text) in rejects.items():
        if n == 13:  # not UTF-8: the bad bytes are written escaped, the rest of the line as is
            assert text == rb"tt0000013	movie	Bad \xff\xfe UTF-8	x	0	2000	\N	90	Drama"
        else:
            assert text == raw_of[n], n

    assert parsed.rows == [
        {
            "tconst": f"tt{n:07d}",
            "title_type": "movie",
            "primary_title": f"Title {n}",
            "original_title": f"Title {n}",
            "is_adult": False,
            "start_year": 2000,
            "end_year": None,
            "runtime_minutes": 90,
            "genres": ["Drama"],
            LINE_COLUMN: line,
        }
        for n, line in ((1, 2), (11, 11), (14, 14))
    ] + [
        {
            "tconst": "tt0000017",
            "title_type": "movie",
            "primary_title": "Max int",
            "original_title": "Max int",
            "is_adult": False,
            "start_year": -(2**31),
            "end_year": None,
            "runtime_minutes": 2**31 - 1,
            "genres": ["Drama"],
            LINE_COLUMN: 17,
        }
    ]
    result = parsed.result
    assert (result.rows, result.rejects, result.lines) == (4, 12, 16)
    assert result.reject_reasons == {
        "expected 9 fields, found N": 3,
        "start_year: value is not an integer": 2,
        "end_year: value is not an integer": 1,
        "runtime_minutes: value is not an integer": 2,
        "is_adult: value is not a boolean (0 or 1)": 1,
        "tconst: key is null": 1,
        DUPLICATE: 1,
        "not valid UTF-8": 1,
    }
    assert result.source_sha256 == "abc123"
    assert ParseResult.read(parsed.parquet) == result
    assert sorted(rejects) == reference.read(BASICS, raw).rejected_lines


def test_ratings_are_exact_decimals_and_bad_ratings_rejected(tmp_path):
    lines = [
        "tt0000001\t5.8\t1466",
        "tt0000002\t5.85\t10",
        "tt0000003\tx\t10",
        "tt0000004\t10.0\t1",
        "tt0000005\t7\t2",
        "tt0000006\t\\N\t\\N",
        "tt0000007\t-1.0\t3",
        "tt0000008\t.5\t3",
    ]
    parsed = Parsed(tmp_path, RATINGS, write_gz(tmp_path / "r.tsv.gz", RATINGS, lines))
    assert [(r["tconst"], r["average_rating"], r["num_votes"]) for r in parsed.rows] == [
        ("tt0000001", Decimal("5.8"), 1466),
        ("tt0000004", Decimal("10.0"), 1),
        ("tt0000005", Decimal("7.0"), 2),
        ("tt0000006", None, None),
    ]
    assert parsed.frame.schema["average_rating"] == pl.Decimal(3, 1)
    assert parsed.rejects == {
        3: ("average_rating: '5.85' is not a rating with one decimal", lines[1].encode()),
        4: ("average_rating: 'x' is not a rating with one decimal", lines[2].encode()),
        8: ("average_rating: '-1.0' is not a rating with one decimal", lines[6].encode()),
        9: ("average_rating: '.5' is not a rating with one decimal", lines[7].encode()),
    }


def test_characters_are_decoded_json_arrays_of_strings(tmp_path):
    lines = [
        'tt0000001\t1\tnm0000001\tself\t\\N\t["Self - \\"Host\\""]',
        "tt0000001\t2\tnm0000002\tactor\t\\N\t[1,2]",
        'tt0000001\t3\tnm0000003\tactor\t\\N\t["unterminated',
        "tt0000001\t4\tnm0000004\tactor\t\\N\tSelf",
        'tt0000001\t5\tnm0000005\tactor\tdirector of photography\t["A", "B\\\\C", "\\u00e9t\\u00e9", "tab\\there"]',
        "tt0000001\t6\tnm0000006\tactor\t\\N\t[]",
        "tt0000001\t7\tnm0000007\tdirector\t\\N\t\\N",
        'tt0000001\t8\tnm0000008\tactor\t\\N\t{"a": "b"}',
        'tt0000001\t9\tnm0000009\tactor\t\\N\t["a", null]',
        'tt0000001\t10\tnm0000010\tactor\t\\N\t["a"] trailing',
        'tt0000001\t11\tnm0000011\tactor\t\\N\t["Déjà vu, 東京"]',
    ]
    parsed = Parsed(tmp_path, PRINCIPALS, write_gz(tmp_path / "p.tsv.gz", PRINCIPALS, lines))
    assert [(r["ordering"], r["job"], r["characters"]) for r in parsed.rows] == [
        (1, None, ['Self - "Host"']),
        (5, "director of photography", ["A", "B\\C", "été", "tab\there"]),
        (6, None, []),
        (7, None, None),
        (11, None, ["Déjà vu, 東京"]),
    ]
    bad = {3: "[1,2]", 4: '["unterminated', 5: "Self", 9: '{"a": "b"}', 10: '["a", null]', 11: '["a"] trailing'}
    assert parsed.rejects == {
        n: (f"characters: '{value}' is not a JSON array of strings", lines[n - 2].encode()) for n, value in bad.items()
    }


def test_characters_the_json_decoder_refuses_reject_their_line_not_the_file(tmp_path):
    """Unicode spaces (matched by a regex whitespace class, refused by JSON) and unpaired surrogate escapes once
    made the decoder fail the whole file, or silently turned into U+0000."""
    lines = [
        'tt0000001\t1\tnm0000001\tactor\t\\N\t["a",\u00a0"b"]',  # NO-BREAK SPACE between elements
        'tt0000001\t2\tnm0000002\tactor\t\\N\t[\u2003"a"]',  # EM SPACE
        'tt0000001\t3\tnm0000003\tactor\t\\N\t["\\ud800"]',  # lone high surrogate
        'tt0000001\t4\tnm0000004\tactor\t\\N\t["\\udc00x"]',  # lone low surrogate
        'tt0000001\t5\tnm0000005\tactor\t\\N\t["\\ud800\\u0041"]',  # high surrogate, then not a low one
        'tt0000001\t6\tnm0000006\tactor\t\\N\t["\\ud83c\\udfac", "\\uD83C\\uDFAC"]',  # a pair: one character
        'tt0000001\t7\tnm0000007\tactor\t\\N\t[ "a" ,\t"b" ]',  # JSON whitespace is fine (\t: one more field)
        'tt0000001\t8\tnm0000008\tactor\t\\N\t[\r"a"\r]',
    ]
    parsed = Parsed(tmp_path, PRINCIPALS, write_gz(tmp_path / "p.tsv.gz", PRINCIPALS, lines))
    assert [(r["ordering"], r["characters"]) for r in parsed.rows] == [(6, ["🎬", "🎬"]), (8, ["a"])]
    rejects = parsed.rejects
    assert rejects.pop(8) == ("expected 6 fields, found 7", lines[6].encode())
    assert rejects == {
        n: (f"characters: '{lines[n - 2].split(chr(9))[-1]}' is not a JSON array of strings", lines[n - 2].encode())
        for n in range(2, 7)
    }


def test_invalid_utf8_rejects_only_its_line(tmp_path):
    lines = [f"tt{n:07d}\t{n % 10}.0\t{n}" for n in range(1, 200)]
    lines[100] = b"tt0000101\t1.0\t\xc3("  # a broken two-byte sequence, in the middle of a block
    parsed = Parsed(tmp_path, RATINGS, write_gz(tmp_path / "r.tsv.gz", RATINGS, lines))
    assert parsed.rejects == {102: ("not valid UTF-8", rb"tt0000101	1.0	\xc3(")}
    assert parsed.column("tconst") == [f"tt{n:07d}" for n in range(1, 200) if n != 101]
    assert parsed.column("num_votes") == [n for n in range(1, 200) if n != 101]


# Duplicate keys across blocks.


def spy_second_pass(monkeypatch) -> list[int]:
    """Records, for each call of the second (whole-file) duplicate pass, how many lines it rejected."""
    calls: list[int] = []
    original = parse._drop_scattered_duplicates

    def spy(dataset, raw, parquet, rejects, parser):
        before = parser.rejects
        original(dataset, raw, parquet, rejects, parser)
        calls.append(parser.rejects - before)

    monkeypatch.setattr(parse, "_drop_scattered_duplicates", spy)
    return calls


def test_duplicates_at_block_boundaries_in_an_ordered_file(tmp_path, monkeypatch):
    monkeypatch.setattr(parse, "BLOCK_BYTES", 64)
    second_pass = spy_second_pass(monkeypatch)
    lines, later = [], []
    for n in range(1, 120):
        lines.append(f"tt{n:07d}\t{n % 10}.{n % 7}\t{n}")
        for _ in range(n % 3):  # 0, 1 or 2 repeats of the key right after its first line, with other values
            lines.append(f"tt{n:07d}\t1.0\t{1000 + n}")
            later.append(len(lines) + 1)
    raw = write_gz(tmp_path / "r.tsv.gz", RATINGS, lines)
    block_starts = {first for first, _ in parse._blocks(RATINGS, raw)}
    assert len(block_starts) > 50
    assert len(block_starts & set(later)) >= 5, "some repeats must be the first line of a block"

    parsed = Parsed(tmp_path, RATINGS, raw)
    assert second_pass == [], "an ordered file needs no second pass"
    assert parsed.rejects == {n: (DUPLICATE, lines[n - 2].encode()) for n in later}
    assert [(r["tconst"], r["num_votes"]) for r in parsed.rows] == [(f"tt{n:07d}", n) for n in range(1, 120)]
    assert parsed.result.rejects == len(later) and parsed.result.reject_reasons == {DUPLICATE: len(later)}
    assert sorted(parsed.rejects) == reference.read(RATINGS, raw).rejected_lines


@pytest.mark.parametrize("block_bytes", [parse.BLOCK_BYTES, 200], indirect=True)
def test_scattered_duplicates_in_an_unordered_file(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(parse, "DEDUPE_PARTITION_ROWS", 7)  # ~180 rows: some 26 hash partitions
    second_pass = spy_second_pass(monkeypatch)
    rng = random.Random(42)
    keys = list(dict.fromkeys((f"tt{rng.randrange(10**7):07d}", o) for o in range(1, 4) for _ in range(60)))
    rng.shuffle(keys)
    # Repeats of keys[source] written right after keys[after]: far after the first line, twice, adjacent, and
    # once *before* the original line (which makes the original the later occurrence).
    repeats = [(3, 170), (10, 150), (10, 160), (50, 50), (100, 20), (0, 179)]
    extra: dict[int, list[tuple[str, int]]] = {}
    for source, after in repeats:
        extra.setdefault(after, []).append(keys[source])
    lines = []
    for i, (t, o) in enumerate(keys):
        lines.append(f'{t}\t{o}\tnm{i:07d}\tactor\t\\N\t["Role {i}"]')
        lines.extend(f"{t2}\t{o2}\tnm9999999\tself\trepeat\t\\N" for t2, o2 in extra.get(i, []))
        if i == 2:
            lines.append("tt0000001\tnot a number\tnm0000001\tactor\t\\N\t\\N")
    raw = write_gz(tmp_path / "p.tsv.gz", PRINCIPALS, lines)

    seen: set[tuple[str, str]] = set()
    later = []
    for n, line in enumerate(lines, start=2):
        key = tuple(line.split("\t")[:2])
        if key[1] == "not a number":
            continue
        if key in seen:
            later.append(n)
        seen.add(key)
    assert len(later) == len(repeats)
    bad_line = lines.index("tt0000001\tnot a number\tnm0000001\tactor\t\\N\t\\N") + 2
    expected = reference.read(PRINCIPALS, raw)
    assert sorted([*later, bad_line]) == expected.rejected_lines

    parsed = Parsed(tmp_path, PRINCIPALS, raw)
    assert len(second_pass) == 1
    if block_bytes < 1000:  # many blocks: the far repeats are only found by the second pass
        assert second_pass[0] >= 4
    rejects = parsed.rejects
    assert sorted(rejects) == expected.rejected_lines
    assert rejects.pop(bad_line) == ("ordering: 'not a number' is not an integer", lines[bad_line - 2].encode())
    assert rejects == {n: (DUPLICATE, lines[n - 2].encode()) for n in later}
    rows = parsed.rows
    assert [tuple(r[c.name] for c in PRINCIPALS.columns) for r in rows] == list(expected.rows.values())
    assert len({(r["tconst"], r["ordering"]) for r in rows}) == len(rows) == len(keys)
    result = parsed.result
    assert (result.rows, result.rejects, result.lines) == (len(keys), len(repeats) + 1, len(lines))
    assert result.reject_reasons == {DUPLICATE: len(repeats), "ordering: value is not an integer": 1}
    assert ParseResult.read(parsed.parquet) == result
    assert pl.read_parquet(parsed.parquet).height == len(keys)


# Refused files keep the previous frame.


@pytest.fixture
def previous(tmp_path) -> Parsed:
    """A good frame already published, which a refused file must leave untouched."""
    lines = [f"tt{n:07d}\t{n % 10}.5\t{n}" for n in range(1, 21)]
    return Parsed(tmp_path, RATINGS, write_gz(tmp_path / "good.tsv.gz", RATINGS, lines))


def snapshot(parsed: Parsed) -> dict[str, bytes]:
    folder = parsed.parquet.parent
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_wrong_header_is_refused_and_keeps_the_previous_frame(tmp_path, previous):
    before = snapshot(previous)
    raw = tmp_path / "bad.tsv.gz"
    raw.write_bytes(gzip.compress(b"tconst\taverageRating\tnumVotes\tnewColumn\ntt0000001\t5.8\t1\t1\n"))
    with pytest.raises(ParseError, match=r"unexpected header .*newColumn.*expected 'tconst\\taverageRating"):
        Parsed(tmp_path, RATINGS, raw)
    assert snapshot(previous) == before  # parquet, sidecar and rejects: nothing replaced, nothing left behind


@pytest.mark.parametrize("ending", [b"\n", b""], ids=["newline", "no-newline"])
def test_header_only_file_has_no_valid_rows(tmp_path, previous, ending):
    before = snapshot(previous)
    raw = tmp_path / "header-only.tsv.gz"
    raw.write_bytes(gzip.compress(RATINGS.header.encode() + ending))
    with pytest.raises(ParseError, match=r"title\.ratings\.tsv\.gz has no valid data rows"):
        Parsed(tmp_path, RATINGS, raw)
    after = snapshot(previous)
    assert read_rejects(previous.rejects_path) == {}  # an empty rejects file is published
    assert after.pop(previous.rejects_path.name) == b"line\treason\traw\n"
    before.pop(previous.rejects_path.name)
    assert after == before


def test_header_then_only_empty_lines_has_no_valid_rows(tmp_path, previous):
    raw = tmp_path / "blank.tsv.gz"
    raw.write_bytes(gzip.compress(RATINGS.header.encode() + b"\n\n"))
    with pytest.raises(ParseError, match="no valid data rows"):
        Parsed(tmp_path, RATINGS, raw)
    assert read_rejects(previous.rejects_path) == {2: ("expected 3 fields, found 1", b"")}


def test_too_many_rejects_refuse_the_file_but_publish_the_rejects(tmp_path, previous):
    before = snapshot(previous)
    lines = [f"tt{n:07d}\t{'bad' if n % 4 == 0 else '5.0'}\t{n}" for n in range(1, 41)]  # 10 of 40 rejected
    raw = write_gz(tmp_path / "bad.tsv.gz", RATINGS, lines)
    with pytest.raises(ParseError) as error:
        Parsed(tmp_path, RATINGS, raw, max_reject_fraction=0.2)
    message = str(error.value)
    assert "10 of 40 lines rejected (25.000%)" in message
    assert "above IMDB_MAX_REJECT_FRACTION=0.2" in message
    assert "10 x average_rating: value is not a rating with one decimal" in message
    assert str(previous.rejects_path) in message
    after = snapshot(previous)
    assert after.pop(previous.rejects_path.name) != before.pop(previous.rejects_path.name)
    assert after == before  # parquet and its sidecar unchanged, no temporary file left
    assert read_rejects(previous.rejects_path) == {
        n + 1: ("average_rating: 'bad' is not a rating with one decimal", lines[n - 1].encode())
        for n in range(4, 41, 4)
    }

    # At the threshold the same file is accepted.
    accepted = Parsed(tmp_path, RATINGS, raw, max_reject_fraction=0.25)
    assert accepted.result.rows == 30 and len(accepted.rows) == 30
    assert json.loads(ParseResult.sidecar(accepted.parquet).read_text())["rejects"] == 10


@pytest.mark.parametrize("block_bytes", [parse.BLOCK_BYTES, 16], indirect=True)
def test_last_line_without_trailing_newline(tmp_path, block_bytes):
    lines = ["tt0000001\t5.8\t1", "tt0000002\t6.1\t2", "tt0000003\t9.9\t1234567"]
    parsed = Parsed(tmp_path, RATINGS, write_gz(tmp_path / "r.tsv.gz", RATINGS, lines, trailing_newline=False))
    assert [(r["tconst"], r["average_rating"], r["num_votes"], r[LINE_COLUMN]) for r in parsed.rows] == [
        ("tt0000001", Decimal("5.8"), 1, 2),
        ("tt0000002", Decimal("6.1"), 2, 3),
        ("tt0000003", Decimal("9.9"), 1234567, 4),
    ]
    assert parsed.result.lines == 3 and parsed.rejects == {}


def test_trailing_empty_line_is_one_rejected_line(tmp_path):
    lines = ["tt0000001\t5.8\t1", "tt0000002\t6.1\t2", ""]
    parsed = Parsed(tmp_path, RATINGS, write_gz(tmp_path / "r.tsv.gz", RATINGS, lines))
    assert parsed.column("tconst") == ["tt0000001", "tt0000002"]
    assert parsed.rejects == {4: ("expected 3 fields, found 1", b"")}


# Real IMDb excerpts.


@pytest.mark.skipif(not SHARED_SAMPLE.is_dir(), reason=f"real IMDb excerpts not found at {SHARED_SAMPLE}")
@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.file_stem)
def test_real_excerpts_agree_with_the_reference_reader(tmp_path, dataset):
    raw = SHARED_SAMPLE / dataset.file_name
    parsed = Parsed(tmp_path, dataset, raw, max_reject_fraction=0.0)
    expected = reference.read(dataset, raw)
    rows = parsed.rows
    assert [r[LINE_COLUMN] for r in rows] == list(range(2, 2 + len(rows)))
    assert [tuple(r[c.name] for c in dataset.columns) for r in rows] == list(expected.rows.values())
    assert len(rows) == parsed.result.rows == parsed.result.lines == 999
    assert expected.rejected_lines == [] and parsed.rejects == {}


def test_nul_characters_reject_their_line_since_postgresql_text_cannot_hold_them(tmp_path):
    raw = write_gz(
        tmp_path / "p.tsv.gz",
        PRINCIPALS,
        [
            'tt0000001\t1\tnm0000001\tactor\t\\N\t["fine"]',
            "tt0000001\t2\tnm0000002\tactor\tgrip\x00\t\\N",
            'tt0000001\t3\tnm0000003\tactor\t\\N\t["A\\u0000B"]',
            'tt0000001\t4\tnm0000004\tactor\t\\N\t["\\u00e9"]',
        ],
    )
    parsed = Parsed(tmp_path, PRINCIPALS, raw)
    assert parsed.column("ordering") == [1, 4]
    assert parsed.column("characters") == [["fine"], ["é"]]
    assert parsed.rejects[3][0] == parse.NUL_REASON
    assert parsed.rejects[4][0] == "characters: '[\"A\\u0000B\"]' is not a JSON array of strings"
