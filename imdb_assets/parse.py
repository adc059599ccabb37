"""Parse an IMDb `.tsv.gz` into a typed Parquet frame, streaming, with every bad line accounted for.

The file is inflated in blocks of whole lines, so memory stays bounded whatever the file's size (title.principals
is ~4 GB of text). Each line is split on tabs by Polars with quoting off and no escape processing, so text stays
byte-exact. A line is rejected, with its number, reason and raw text, when it has the wrong number of fields, a value
that does not parse as its column's type, a null key, or a key seen on an earlier line (the first occurrence wins).
The Parquet file and the rejects file are written under temporary names and published only when the share of
rejected lines is within the allowed fraction, so a bad file never replaces a good frame.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import BinaryIO, TypeVar

import polars as pl
import pyarrow as pa
from polars.datatypes import DataType, DataTypeClass

from imdb_assets import storage
from imdb_assets.catalog import LIST_SEPARATORS, Column, Dataset, Kind
from imdb_assets.storage import Location

T = TypeVar("T")
NULL = r"\N"
BLOCK_BYTES = 32 << 20
LINE_COLUMN = "source_line"  # provenance: the line of the source file a row came from
DEDUPE_PARTITION_ROWS = 20_000_000  # keys per pass when a file is not ordered by key

POLARS_TYPES: dict[Kind, DataType | DataTypeClass] = {
    Kind.TEXT: pl.String,
    Kind.INT: pl.Int32,
    Kind.BOOL: pl.Boolean,
    Kind.RATING: pl.Decimal(3, 1),
    Kind.COMMA_LIST: pl.List(pl.String),
    Kind.X02_LIST: pl.List(pl.String),
    Kind.JSON_LIST: pl.List(pl.String),
}
# Exactly what Polars' JSON decoder accepts, so a line it would fail on is rejected instead of failing the file:
# JSON's own whitespace (the regex \s would also match Unicode spaces such as U+00A0), and \u escapes that are
# not surrogates or are a high surrogate followed by a low one (a lone surrogate fails or decodes to U+0000).
_JSON_SPACE = r"[ \t\n\r]*"
_JSON_ESCAPE = (
    r'\\(?:["\\/bfnrt]'
    r"|u(?:[0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})"
    r"|u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)
_JSON_STRING = rf'"(?:[^"\\\x00-\x1f]|{_JSON_ESCAPE})*"'
JSON_STRING_ARRAY = (
    rf"^\[{_JSON_SPACE}(?:{_JSON_STRING}(?:{_JSON_SPACE},{_JSON_SPACE}{_JSON_STRING})*)?{_JSON_SPACE}\]$"
)
INTEGER = r"^-?[0-9]+$"
NUL_REASON = "contains a NUL character, which PostgreSQL text cannot hold"
DUPLICATE_REASON = "duplicate key: an earlier line has the same key"
# Without dictionaries: ids and titles rarely repeat, so a dictionary costs CPU to write and read and saves nothing.
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1, "use_dictionary": False}
# Row groups small enough that the load, which cuts its parts at row groups (load.parts.plan_parts), can share a frame
# among its connections in near-even parts.
ROW_GROUP_ROWS = 50_000
RATING = r"^[0-9]{1,2}(?:\.[0-9])?$"


class ParseError(Exception):
    """The file cannot become a frame: wrong header, no rows, or too many rejected lines."""


@dataclass(frozen=True)
class ParseResult:
    rows: int
    rejects: int
    lines: int
    reject_reasons: dict[str, int]
    source_sha256: str
    seconds: float
    parquet_bytes: int
    source_url: str = ""
    source_last_modified: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    @property
    def reject_fraction(self) -> float:
        return self.rejects / self.lines if self.lines else 0.0

    @staticmethod
    def sidecar(parquet: Location) -> Location:
        return parquet.with_name(parquet.name + ".json")

    @classmethod
    def read(cls, parquet: Location) -> ParseResult | None:
        sidecar = cls.sidecar(parquet)
        if not (parquet.exists() and sidecar.exists()):
            return None
        return cls(**json.loads(sidecar.read_text()))


def arrow_schema(dataset: Dataset) -> pa.Schema:
    """The frame's schema: the catalog's columns in their Polars types, plus the source line number."""
    frame = pl.DataFrame(schema={c.name: POLARS_TYPES[c.kind] for c in dataset.columns} | {LINE_COLUMN: pl.Int64})
    return frame.to_arrow().schema


def parse_file(
    dataset: Dataset,
    raw: Location,
    parquet: Location,
    rejects: Location,
    *,
    source_sha256: str,
    max_reject_fraction: float,
    source_url: str = "",
    source_last_modified: str = "",
    log: logging.Logger | None = None,
) -> ParseResult:
    """Parse ``raw`` into ``parquet`` (and ``rejects``), replacing them only if the file is acceptable."""
    log = log or logging.getLogger(__name__)
    started = time.monotonic()
    storage.ensure_folder(parquet.parent)
    storage.ensure_folder(rejects.parent)
    tmp_parquet = parquet.with_name(f".{parquet.name}.{uuid.uuid4().hex[:12]}.part")
    tmp_rejects = rejects.with_name(f".{rejects.name}.{uuid.uuid4().hex[:12]}.part")
    parser = _BlockParser(dataset)
    try:
        with tmp_rejects.open("wb") as rejects_out:
            with storage.parquet_writer(tmp_parquet, arrow_schema(dataset), **PARQUET_OPTIONS) as writer:
                rejects_out.write(b"line\treason\traw\n")
                last_report = started
                # Three stages on three threads: inflating, parsing (Polars, itself multi-threaded) and writing.
                blocks = read_ahead(_blocks(dataset, raw))
                parsed = read_ahead(
                    (valid.to_arrow().cast(writer.schema), rejected)
                    for valid, rejected in (parser.parse(first_line, block) for first_line, block in blocks)
                )
                for valid, rejected in parsed:
                    writer.write_table(valid, row_group_size=ROW_GROUP_ROWS)
                    _write_rejects(rejects_out, rejected)
                    if time.monotonic() - last_report >= 5:
                        last_report = time.monotonic()
                        rate = parser.lines / (last_report - started)
                        log.info(f"{dataset.file_name}: {parser.lines:,} lines parsed ({rate:,.0f} lines/s)")
            if not parser.grouped_by_key:
                log.info(f"{dataset.file_name} is not ordered by key: checking duplicates across the whole file")
                _drop_scattered_duplicates(dataset, raw, tmp_parquet, rejects_out, parser)

        result = ParseResult(
            rows=parser.rows,
            rejects=parser.rejects,
            lines=parser.lines,
            reject_reasons=parser.reasons,
            source_sha256=source_sha256,
            seconds=time.monotonic() - started,
            parquet_bytes=tmp_parquet.stat().st_size,
            source_url=source_url,
            source_last_modified=source_last_modified,
        )
        # Rejects are published even when the file is refused: they are how a user finds out why.
        storage.publish(tmp_rejects, rejects)
        if result.rows == 0:
            raise ParseError(f"{dataset.file_name} has no valid data rows; the previous frame is kept")
        if result.reject_fraction > max_reject_fraction:
            raise ParseError(
                f"{dataset.file_name}: {result.rejects:,} of {result.lines:,} lines rejected "
                f"({result.reject_fraction:.3%}), above IMDB_MAX_REJECT_FRACTION={max_reject_fraction:g}; "
                f"the previous frame and table are kept. Reasons: {_top_reasons(result.reject_reasons)}. "
                f"Rejected lines are in {rejects}"
            )
        storage.publish(tmp_parquet, parquet)
        tmp = ParseResult.sidecar(parquet).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(result), indent=2))
        storage.publish(tmp, ParseResult.sidecar(parquet))
        return result
    finally:
        with contextlib.suppress(OSError):  # an object store that went away keeps its partial uploads
            storage.remove(tmp_parquet)
            storage.remove(tmp_rejects)


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced on a worker thread up to ``depth`` ahead of the consumer: decompressing, decoding and
    encoding (which release the GIL) overlap the work that consumes them, with bounded memory."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = deque(worker.submit(_next, items) for _ in range(depth))
        try:
            while (item := pending.popleft().result()) is not None:
                pending.append(worker.submit(_next, items))
                yield item[0]
        finally:
            for future in pending:
                future.cancel()


def _next(items: Iterator[T]) -> tuple[T] | None:
    """The next item in a 1-tuple (an item may itself be None), or None at the end."""
    try:
        return (next(items),)
    except StopIteration:
        return None


def _top_reasons(reasons: dict[str, int], n: int = 3) -> str:
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:n]
    return "; ".join(f"{count:,} x {reason}" for reason, count in top)


def _blocks(dataset: Dataset, raw: Location) -> Iterator[tuple[int, bytes]]:
    """Yield (number of the first line, bytes of whole lines) after checking the header; line 1 is the header."""
    with raw.open("rb") as compressed, gzip.open(compressed, "rb") as stream:
        header = stream.readline()
        if header.rstrip(b"\n").decode("utf-8", "replace") != dataset.header:
            raise ParseError(
                f"{dataset.file_name}: unexpected header {header[:300]!r}; expected {dataset.header!r}. "
                "Did IMDb change the file's format?"
            )
        line = 2
        carry = b""
        while chunk := stream.read(BLOCK_BYTES):
            block = carry + chunk
            cut = block.rfind(b"\n")
            if cut < 0:
                carry = block
                continue
            carry = block[cut + 1 :]
            yield line, block[:cut]
            line += block.count(b"\n", 0, cut) + 1
        if carry:
            yield line, carry


def _lines(block: bytes) -> tuple[pl.Series, list[int]]:
    """The block's lines as a String series, and the offsets of lines that are not valid UTF-8 (kept with their
    bad bytes backslash-escaped, for the rejects file)."""
    expected = block.count(b"\n") + 1
    unused = next((bytes([b]) for b in (1, 3, 4, 5, 6, 7, 8, 14, 15, 16) if bytes([b]) not in block), None)
    # Polars would drop a \r before \n and a byte order mark opening the block, and refuses an empty block (one
    # empty line): those take the plain path below, so every byte is kept.
    if unused is not None and block and b"\r" not in block and not block.startswith(b"\xef\xbb\xbf"):
        try:
            frame = pl.read_csv(
                block,
                has_header=False,
                separator=unused.decode(),
                quote_char=None,
                infer_schema=False,
                new_columns=["line"],
                eol_char="\n",
            )
            if frame.height == expected:
                return frame["line"].fill_null(""), []
        except pl.exceptions.ComputeError:
            pass  # invalid UTF-8 somewhere in the block
    values: list[str] = []
    invalid: list[int] = []
    for offset, raw_line in enumerate(block.split(b"\n")):
        try:
            values.append(raw_line.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(raw_line.decode("utf-8", "backslashreplace"))
            invalid.append(offset)
    return pl.Series("line", values, dtype=pl.String), invalid


class _BlockParser:
    """Turns blocks of lines into (valid typed rows, rejected lines), remembering state across blocks."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.keys = list(dataset.primary_key)
        self.names = [c.name for c in dataset.columns]
        self.rows = self.rejects = self.lines = 0
        self.reasons: dict[str, int] = {}
        self.grouped_by_key = True
        self._last_key: dict | None = None

    def parse(self, first_line: int, block: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
        lines, invalid_utf8 = _lines(block)
        width = len(self.names)
        frame = (
            lines.to_frame()
            .with_row_index(LINE_COLUMN, offset=first_line)
            .with_columns(pl.col(LINE_COLUMN).cast(pl.Int64))
            .with_columns(
                fields=pl.col("line").str.count_matches("\t", literal=True) + 1,
                split=pl.col("line").str.split_exact("\t", width - 1).struct.rename_fields(self.names),
            )
            .unnest("split")
        )
        typed = [_typed(column) for column in self.dataset.columns]
        reasons = [
            pl.when(pl.col("fields") != width).then(pl.format(f"expected {width} fields, found {{}}", "fields")),
            pl.when(pl.col("line").str.contains("\x00", literal=True)).then(pl.lit(NUL_REASON)),
            *(pl.when(pl.col(k) == NULL).then(pl.lit(f"{k}: key is null")) for k in self.keys),
            *(reason for _, reason in typed),
        ]
        frame = frame.with_columns(reason=pl.coalesce(reasons))
        if invalid_utf8:
            frame = frame.with_columns(
                reason=pl.when(pl.int_range(pl.len()).is_in(invalid_utf8))
                .then(pl.lit("not valid UTF-8"))
                .otherwise("reason")
            )
        candidates = frame.filter(pl.col("reason").is_null()).select(
            *(value.alias(c.name) for c, (value, _) in zip(self.dataset.columns, typed, strict=True)),
            LINE_COLUMN,
        )
        valid, duplicates = self._deduplicate(candidates)
        rejected = pl.concat(
            [
                frame.filter(pl.col("reason").is_not_null()).select(LINE_COLUMN, "reason", "line"),
                frame.filter(pl.col(LINE_COLUMN).is_in(duplicates[LINE_COLUMN].implode()))
                .select(LINE_COLUMN, "line")
                .with_columns(reason=pl.lit(DUPLICATE_REASON))
                .select(LINE_COLUMN, "reason", "line"),
            ]
        ).sort(LINE_COLUMN)
        self._count(frame.height, valid.height, rejected)
        return valid, rejected

    def _deduplicate(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Drop repeated keys within the block, and across blocks when the file is grouped by key."""
        if rows.is_empty():
            return rows, rows
        first = pl.struct(self.keys).is_first_distinct()
        if self._last_key is not None:
            first = first & ~pl.all_horizontal(pl.col(k) == v for k, v in self._last_key.items())
        if self.grouped_by_key:
            previous = self._last_key
            self.grouped_by_key = _is_ordered(rows, self.keys) and (
                previous is None or _key_tuple(rows.row(0, named=True), self.keys) >= _key_tuple(previous, self.keys)
            )
        self._last_key = {k: rows[k][-1] for k in self.keys}
        flags = rows.select(first.alias("keep"))["keep"]
        return rows.filter(flags), rows.filter(~flags)

    def count_late_duplicates(self, count: int) -> None:
        """Duplicates found after the blocks were written (files not ordered by key) move from rows to rejects."""
        self.rows -= count
        self.rejects += count
        self.reasons[DUPLICATE_REASON] = self.reasons.get(DUPLICATE_REASON, 0) + count

    def _count(self, lines: int, rows: int, rejected: pl.DataFrame) -> None:
        self.lines += lines
        self.rows += rows
        self.rejects += rejected.height
        for reason, count in rejected.group_by(_reason_kind()).len().iter_rows():
            self.reasons[reason] = self.reasons.get(reason, 0) + count


def _reason_kind() -> pl.Expr:
    """A reason without the offending value, for counting: "start_year: 'x' is not an integer" -> its column+kind."""
    return pl.col("reason").str.replace(r"'.*'", "value").str.replace(r"found \d+", "found N")


def _key_tuple(row: dict, keys: list[str]) -> tuple:
    return tuple(row[k] for k in keys)


def _is_ordered(rows: pl.DataFrame, keys: list[str]) -> bool:
    """Whether consecutive rows are in non-decreasing key order (so equal keys are adjacent)."""
    last = pl.col(keys[-1])
    ordered = last <= last.shift(-1)
    for key in reversed(keys[:-1]):
        current, following = pl.col(key), pl.col(key).shift(-1)
        ordered = (current < following) | ((current == following) & ordered)
    return bool(rows.select(ordered.fill_null(True).all()).item())


def _typed(column: Column) -> tuple[pl.Expr, pl.Expr | None]:
    """(typed value, reason the raw field is invalid or null) for one column, from its catalog kind."""
    raw = pl.col(column.name)
    present = raw != NULL

    def invalid(condition: pl.Expr, what: str) -> pl.Expr:
        return pl.when(present & condition).then(pl.format(f"{column.name}: '{{}}' is not {what}", raw))

    match column.kind:
        case Kind.TEXT:
            return pl.when(present).then(raw), None
        case Kind.INT:
            number = raw.cast(pl.Int32, strict=False)
            return (
                pl.when(present).then(number),
                invalid(number.is_null() | ~raw.str.contains(INTEGER), "an integer"),
            )
        case Kind.BOOL:
            return pl.when(present).then(raw == "1"), invalid(~raw.is_in(["0", "1"]), "a boolean (0 or 1)")
        case Kind.RATING:
            return (
                pl.when(present).then(raw.cast(pl.Decimal(3, 1), strict=False)),
                invalid(~raw.str.contains(RATING), "a rating with one decimal"),
            )
        case Kind.COMMA_LIST | Kind.X02_LIST:
            return pl.when(present).then(raw.str.split(LIST_SEPARATORS[column.kind])), None
        case Kind.JSON_LIST:
            return (
                pl.when(present).then(raw).str.json_decode(pl.List(pl.String)),
                invalid(
                    ~raw.str.contains(JSON_STRING_ARRAY) | raw.str.contains(r"\u0000", literal=True),
                    "a JSON array of strings",
                ),
            )
    raise AssertionError(column.kind)


def _write_rejects(out, rejected: pl.DataFrame) -> None:
    for line, reason, raw in rejected.iter_rows():
        out.write(f"{line}\t{reason}\t{raw}\n".encode())


def _drop_scattered_duplicates(
    dataset: Dataset, raw: Location, parquet: Location, rejects_out: BinaryIO, parser: _BlockParser
) -> None:
    """Second pass for files not ordered by key: find repeated keys with bounded memory (hash partitions of the key
    columns), drop them from the frame and write their raw lines to the rejects."""
    keys = list(dataset.primary_key)
    partitions = max(1, math.ceil(parser.rows / DEDUPE_PARTITION_ROWS))
    scan = storage.scan_parquet(parquet).select(*keys, LINE_COLUMN)
    duplicates: list[int] = []
    for part in range(partitions):
        in_part = scan.filter(pl.struct(keys).hash(seed=0) % partitions == part)
        found = in_part.filter(~pl.struct(keys).is_first_distinct()).select(LINE_COLUMN).collect()
        duplicates.extend(found[LINE_COLUMN].to_list())
    if not duplicates:
        return
    dropped = set(duplicates)
    rewritten = parquet.with_name(parquet.name + ".dedup")
    source = storage.parquet_file(parquet)
    try:
        with storage.parquet_writer(rewritten, source.schema_arrow, **PARQUET_OPTIONS) as writer:
            for group in range(source.num_row_groups):
                table = pl.DataFrame(source.read_row_group(group)).filter(~pl.col(LINE_COLUMN).is_in(duplicates))
                writer.write_table(table.to_arrow().cast(writer.schema), row_group_size=ROW_GROUP_ROWS)
        storage.publish(rewritten, parquet)
    finally:
        storage.remove(rewritten)

    for first_line, block in _blocks(dataset, raw):
        for offset, raw_line in enumerate(block.split(b"\n")):
            if first_line + offset in dropped:
                rejects_out.write(f"{first_line + offset}\t{DUPLICATE_REASON}\t".encode() + raw_line + b"\n")
    parser.count_late_duplicates(len(dropped))
