"""An independent, deliberately plain reading of an IMDb file: the oracle the pipeline's output is compared with.

Line by line in pure Python, with the rules of the table contract spelled out directly (no Polars, no shared code
with the parser beyond the catalog), so a bug in the fast path cannot hide in the expected values.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from imdb_assets.catalog import Dataset, Kind

NULL = "\\N"


class Invalid(ValueError):
    pass


def _value(kind: Kind, raw: str):
    if raw == NULL:
        return None
    if kind is Kind.TEXT:
        return raw
    if kind is Kind.INT:
        if not re.fullmatch(r"-?[0-9]+", raw) or not -(2**31) <= int(raw) < 2**31:
            raise Invalid(raw)
        return int(raw)
    if kind is Kind.BOOL:
        if raw not in ("0", "1"):
            raise Invalid(raw)
        return raw == "1"
    if kind is Kind.RATING:
        if not re.fullmatch(r"[0-9]{1,2}(\.[0-9])?", raw):
            raise Invalid(raw)
        return Decimal(raw).quantize(Decimal("0.1"))
    if kind is Kind.COMMA_LIST:
        return raw.split(",")
    if kind is Kind.X02_LIST:
        return raw.split("\x02")
    if kind is Kind.JSON_LIST:
        try:
            values = json.loads(raw)
        except json.JSONDecodeError as error:
            raise Invalid(raw) from error
        if not isinstance(values, list) or not all(isinstance(v, str) and "\x00" not in v for v in values):
            raise Invalid(raw)
        return values
    raise AssertionError(kind)


@dataclass
class Expected:
    rows: dict[tuple, tuple] = field(default_factory=dict)  # primary key -> typed row, in file order
    rejected_lines: list[int] = field(default_factory=list)


def read(dataset: Dataset, path: Path) -> Expected:
    expected = Expected()
    key_positions = [i for i, c in enumerate(dataset.columns) if c.name in dataset.primary_key]
    with gzip.open(path, "rb") as stream:
        lines = stream.read().split(b"\n")
    assert lines[0].decode() == dataset.header
    if lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines[1:], start=2):
        try:
            text = raw.decode("utf-8")
            if "\x00" in text:
                raise Invalid("NUL")
            fields = text.split("\t")
            if len(fields) != len(dataset.columns):
                raise Invalid("field count")
            row = tuple(_value(c.kind, f) for c, f in zip(dataset.columns, fields, strict=True))
            key = tuple(row[i] for i in key_positions)
            if None in key or key in expected.rows:
                raise Invalid("key")
        except (Invalid, UnicodeDecodeError):
            expected.rejected_lines.append(number)
            continue
        expected.rows[key] = row
    return expected
