"""Where the platform's files live (`IMDB_DATA_DIR`): a local folder, or an S3-compatible bucket and prefix.

Raw files, parsed frames, rejects and the frames the tables hold are locations under one root: a `pathlib.Path` in
a folder, a `upath.UPath` (s3fs) under `s3://bucket/prefix`. Credentials, region and endpoint come from the
standard AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`), which
s3fs and Polars' own object store both read; a plain `http://` endpoint (MinIO, moto) is allowed. The few
operations that differ between a folder and a bucket are here: publishing a finished file (a rename in a folder; a
copy in a bucket, whose objects appear whole or not at all), folders (a bucket has only prefixes), links, and
opening Parquet for pyarrow and Polars.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from typing_extensions import TypeIs
from upath import UPath

from imdb_assets import disk
from imdb_assets.settings import DATA_DIR_SCHEMES

# The standard variables that configure the bucket's client, read by s3fs (botocore) and Polars alike.
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)
# Seconds to connect and attempts per request: an endpoint that is down fails the step in seconds, not minutes.
CONNECT_TIMEOUT_SECONDS = 10
MAX_ATTEMPTS = 3

Location = Path | UPath


class StorageError(OSError):
    """An object store refused or failed an operation; the message names the bucket and the key."""


def location(value: str | Location) -> Location:
    """The location ``value`` names: an absolute folder, or an object-store URL of a supported scheme."""
    if isinstance(value, UPath | Path):
        return value
    value = str(value)
    kind = urlsplit(value).scheme.lower() if "://" in value else ""
    if not kind:
        return Path(value).absolute()
    if kind not in DATA_DIR_SCHEMES:
        raise ValueError(f"{value}: the scheme {kind}:// is not supported; use a folder or s3://bucket/prefix")
    return UPath(
        value,
        # The variables botocore would read anyway, given so that s3fs's cache of clients is keyed by them: a
        # process whose endpoint or credentials changed gets a new client.
        endpoint_url=_endpoint() or None,
        key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        token=os.environ.get("AWS_SESSION_TOKEN"),
        client_kwargs={"region_name": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")},
        config_kwargs={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "retries": {"max_attempts": MAX_ATTEMPTS}},
    )


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""


def is_local(place: Location) -> TypeIs[Path]:
    return isinstance(place, Path)


def ensure_folder(place: Location) -> None:
    """Create ``place`` as a folder; a bucket needs none (and s3fs would create a missing bucket)."""
    if is_local(place):
        place.mkdir(parents=True, exist_ok=True)


def publish(finished: Location, target: Location) -> None:
    """Put ``finished`` in ``target``'s place, atomically: readers see the old file or the new one."""
    if isinstance(finished, Path) and isinstance(target, Path):
        os.replace(finished, target)
    elif isinstance(finished, UPath):
        finished.rename(target)
    else:
        raise ValueError(f"{finished} and {target} are not in the same store")


def keep_copy(source: Location, target: Location) -> None:
    """``target`` holds ``source``'s bytes: a hard link in a folder (no bytes until ``source`` is replaced), a
    server-side copy in a bucket."""
    if isinstance(source, UPath) and isinstance(target, UPath):
        source.fs.copy(source.path, target.path)
        return
    if not (isinstance(source, Path) and isinstance(target, Path)):
        raise ValueError(f"{source} and {target} are not in the same store")
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(source, target)


def remove(place: Location) -> None:
    place.unlink(missing_ok=True)


def parquet_file(place: Location) -> pq.ParquetFile:
    """``place`` opened by pyarrow: memory-mapped from a folder, by ranged reads from a bucket."""
    if is_local(place):
        return pq.ParquetFile(place)
    return pq.ParquetFile(place.path, filesystem=place.fs)


def parquet_writer(place: Location, schema: pa.Schema, **options: Any) -> pq.ParquetWriter:
    """A Parquet writer streaming to ``place`` (in a bucket, a multipart upload)."""
    if is_local(place):
        return pq.ParquetWriter(place, schema, **options)
    return pq.ParquetWriter(place.path, schema, filesystem=place.fs, **options)


def scan_parquet(places: Location | list[Location]) -> pl.LazyFrame:
    """Polars' scan of ``places``, read by its own object store from a bucket."""
    places = places if isinstance(places, list) else [places]
    local = [place for place in places if isinstance(place, Path)]
    if len(local) == len(places):
        return pl.scan_parquet(local)
    return pl.scan_parquet([str(place) for place in places], storage_options=polars_storage_options())


def polars_storage_options() -> dict[str, str]:
    """What Polars needs beyond the AWS variables it reads itself: plain HTTP when the endpoint is http://."""
    return {"aws_allow_http": "true"} if _endpoint().lower().startswith("http://") else {}


def tree_bytes(place: Location) -> int:
    """Bytes of the files under ``place`` (0 when there are none)."""
    if is_local(place):
        return disk.folder_bytes(place) if place.exists() else 0
    assert isinstance(place, UPath)
    try:
        return int(place.fs.du(place.path, total=True))
    except FileNotFoundError:
        return 0


def check(root: Location) -> None:
    """Fail with a `StorageError` naming the bucket when ``root``'s bucket cannot be listed: missing, denied, or
    an endpoint that does not answer. A folder needs no check."""
    if isinstance(root, UPath):
        with naming(root):
            root.fs.ls(_bucket(root), refresh=True)


@contextmanager
def naming(place: Location) -> Iterator[None]:
    """Errors of the object store inside the block raised again as a `StorageError` that names the bucket, the key
    and what went wrong; a folder's errors pass unchanged."""
    if not isinstance(place, UPath):
        yield
        return
    try:
        yield
    except StorageError:
        raise
    except Exception as error:
        if not _from_object_store(error):
            raise
        raise StorageError(f"{_describe(place, error)} (bucket {_bucket(place)!r}, key {_key(place)!r})") from error


def _bucket(place: UPath) -> str:
    return place.path.split("/", 1)[0]


def _key(place: UPath) -> str:
    return place.path.partition("/")[2]


def _from_object_store(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) is the object store's or its connection's; a database's error is not,
    whatever socket error lies under it."""
    if type(error).__module__.startswith(("psycopg", "adbc_driver")):
        return False
    while error is not None:
        module = type(error).__module__
        if isinstance(error, OSError) or module.startswith(("botocore", "aiobotocore", "aiohttp", "s3fs")):
            return True
        error = error.__cause__ or error.__context__
    return False


def _describe(place: UPath, error: BaseException) -> str:
    endpoint = _endpoint() or "AWS S3"
    text = str(error) or type(error).__name__
    if isinstance(error, PermissionError) or "AccessDenied" in text or "InvalidAccessKeyId" in text:
        key_id = os.environ.get("AWS_ACCESS_KEY_ID", "(none)")
        return f"{place}: access denied for AWS_ACCESS_KEY_ID={key_id}: {text}"
    if isinstance(error, FileNotFoundError) and "bucket" in text.lower():
        return f"{place}: the bucket {_bucket(place)!r} does not exist at {endpoint}"
    if "connect" in text.lower() or "endpoint" in text.lower():
        return f"{place}: the object store at {endpoint} cannot be reached: {text}"
    return f"{place}: {text}"
