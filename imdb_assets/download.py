"""Conditional, verified, atomic downloads of IMDb's `.tsv.gz` files.

A file is streamed to a temporary name beside its destination (in a bucket, a multipart upload) while it is hashed
and decompressed end to end; only a complete gzip stream replaces the previous copy (``storage.publish``). What was
fetched (ETag, Last-Modified, size, mtime, sha256) is kept in a sidecar JSON so the next request can be conditional
even on a throwaway Dagster instance. Given the release it must not go back from, a download reads the offered
file's date from its answer's headers (or its mtime) and refuses an older one before any byte is written
(``imdb_assets.release``).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from imdb_assets import release, storage
from imdb_assets.storage import Location

CHUNK = 1 << 20
INFLATE_LIMIT = 64 << 20  # bound the memory one inflate call may use
PROGRESS_EVERY_SECONDS = 5.0


class DownloadError(Exception):
    """A download that cannot succeed by retrying (4xx, not a gzip file, truncated stream)."""


class TransientDownloadError(Exception):
    """A failure worth retrying: connection errors, timeouts, 5xx."""


@dataclass(frozen=True)
class RemoteVersion:
    """What identifies one release of a file: HTTP validators, or size and mtime for file://."""

    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None
    mtime: float | None = None

    def key(self) -> str:
        return self.etag or self.last_modified or f"{self.size}-{self.mtime}"

    @property
    def modified(self) -> str:
        """Last-Modified as the server sent it; for file://, the file's mtime in the same format."""
        if self.last_modified:
            return self.last_modified
        return email.utils.formatdate(self.mtime, usegmt=True) if self.mtime is not None else ""


@dataclass(frozen=True)
class LocalCopy:
    """The sidecar describing the file on disk."""

    url: str
    version: RemoteVersion
    bytes: int
    uncompressed_bytes: int
    sha256: str
    downloaded_at: float

    @staticmethod
    def sidecar(path: Location) -> Location:
        return path.with_name(path.name + ".json")

    @classmethod
    def read(cls, path: Location) -> LocalCopy | None:
        sidecar = cls.sidecar(path)
        if not (path.exists() and sidecar.exists()):
            return None
        data = json.loads(sidecar.read_text())
        return cls(**{**data, "version": RemoteVersion(**data["version"])})

    def write(self, path: Location) -> None:
        tmp = self.sidecar(path).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        storage.publish(tmp, self.sidecar(path))


@dataclass(frozen=True)
class DownloadResult:
    changed: bool
    copy: LocalCopy
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.copy.bytes / 1e6 / self.seconds if self.changed and self.seconds else 0.0


def file_url(base_url: str, file_name: str) -> str:
    return urljoin(base_url if base_url.endswith("/") else base_url + "/", file_name)


def local_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def remote_version(url: str, client: httpx.Client | None = None) -> RemoteVersion:
    """The current version of a file without fetching it: HEAD for http(s), stat for file://. A server that refuses
    HEAD (405, 501) is asked for the file's first byte instead, and only the answer's headers are read."""
    if urlsplit(url).scheme == "file":
        stat = local_path(url).stat()
        return RemoteVersion(size=stat.st_size, mtime=stat.st_mtime)
    owned = client is None
    client = client or httpx.Client(follow_redirects=True, timeout=30)
    try:
        response = client.head(url)
        if response.status_code in (405, 501):
            # Leaving the stream unread closes the connection, so a server that ignores Range sends no more.
            with client.stream("GET", url, headers={"Range": "bytes=0-0"}) as response:
                pass
    finally:
        if owned:
            client.close()
    _raise_for_status(url, response)
    return _version_of(response)


class GzipVerifier:
    """Hashes the compressed bytes and inflates every gzip member, proving the stream is complete."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.uncompressed_bytes = 0
        self._inflater = zlib.decompressobj(wbits=31)
        self._inside_member = False

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.bytes += len(chunk)
        while chunk:
            try:
                self.uncompressed_bytes += len(self._inflater.decompress(chunk, INFLATE_LIMIT))
                # Stop at the member's end: CPython then leaves the leftover input in unconsumed_tail as well as in
                # unused_data, and calling again would append it to unused_data forever.
                while self._inflater.unconsumed_tail and not self._inflater.eof:
                    tail = self._inflater.unconsumed_tail
                    self.uncompressed_bytes += len(self._inflater.decompress(tail, INFLATE_LIMIT))
            except zlib.error as error:
                raise DownloadError(f"not a valid gzip stream at byte {self.bytes:,}: {error}") from error
            self._inside_member = not self._inflater.eof
            chunk = b""
            if self._inflater.eof:  # a gzip file may hold several members back to back
                chunk = self._inflater.unused_data
                self._inflater = zlib.decompressobj(wbits=31)

    def finish(self) -> None:
        if self.bytes == 0:
            raise DownloadError("the file is empty")
        if self._inside_member:
            raise DownloadError(f"truncated gzip stream: it ends mid-member after {self.bytes:,} bytes")


def _version_of(response: httpx.Response) -> RemoteVersion:
    return RemoteVersion(etag=response.headers.get("etag"), last_modified=response.headers.get("last-modified"))


def _raise_for_status(url: str, response: httpx.Response) -> None:
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientDownloadError(f"{url}: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise DownloadError(f"{url}: HTTP {response.status_code}")


def download(
    url: str,
    dest: Location,
    *,
    force: bool = False,
    not_older_than: str | None = None,
    timeout: float = 60.0,
    max_attempts: int = 5,
    backoff_seconds: float = 1.0,
    log: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Fetch ``url`` into ``dest`` unless the local copy is current; retry transient failures with backoff. A release
    dated before ``not_older_than`` (a Last-Modified text) is refused with OlderReleaseRefused, ``dest`` kept."""
    log = log or logging.getLogger(__name__)
    previous = None if force else LocalCopy.read(dest)
    started = time.monotonic()
    for attempt in range(1, max_attempts + 1):
        try:
            copy = _fetch(url, dest, previous, not_older_than, timeout, log)
        except TransientDownloadError as error:
            if attempt == max_attempts:
                raise DownloadError(f"{error} (gave up after {attempt} attempts)") from error
            delay = backoff_seconds * 2 ** (attempt - 1)
            log.warning("%s; attempt %d of %d, retrying in %.1fs", error, attempt, max_attempts, delay)
            sleep(delay)
            continue
        seconds = time.monotonic() - started
        if copy is None:
            assert previous is not None
            return DownloadResult(changed=False, copy=previous, seconds=seconds)
        return DownloadResult(changed=True, copy=copy, seconds=seconds)
    raise AssertionError("unreachable")


def _fetch(
    url: str, dest: Location, previous: LocalCopy | None, not_older_than: str | None, timeout: float, log
) -> LocalCopy | None:
    """One attempt. Returns None when the remote file is unchanged."""
    if urlsplit(url).scheme == "file":
        source = local_path(url)
        if not source.exists():
            raise DownloadError(f"{url}: no such file")
        version = remote_version(url)
        if previous and previous.version == version and previous.url == url:
            return None
        release.refuse_older(dest.name, version.modified, not_older_than)
        with source.open("rb") as stream:
            return _store(url, version, _read_chunks(stream), dest, source.stat().st_size, log)

    headers = {}
    if previous and previous.url == url:
        if previous.version.etag:
            headers["If-None-Match"] = previous.version.etag
        if previous.version.last_modified:
            headers["If-Modified-Since"] = previous.version.last_modified
    try:
        with (
            httpx.Client(follow_redirects=True, timeout=timeout) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            if response.status_code == 304:
                if not headers:
                    raise DownloadError(f"{url}: HTTP 304 to a request that was not conditional")
                return None
            _raise_for_status(url, response)
            version = _version_of(response)
            release.refuse_older(dest.name, version.modified, not_older_than)
            expected = int(response.headers["content-length"]) if "content-length" in response.headers else None
            return _store(url, version, response.iter_bytes(CHUNK), dest, expected, log)
    except httpx.TransportError as error:  # connect errors, timeouts, connection dropped mid-body
        raise TransientDownloadError(f"{url}: {type(error).__name__}: {error or 'connection failed'}") from error


def _read_chunks(stream) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def _store(url, version, chunks: Iterator[bytes], dest: Location, expected: int | None, log) -> LocalCopy:
    """Stream ``chunks`` to a temporary file, verify them, then atomically replace ``dest``."""
    storage.ensure_folder(dest.parent)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.part")
    verifier = GzipVerifier()
    started = last_report = time.monotonic()
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
                verifier.update(chunk)
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY_SECONDS:
                    last_report = now
                    done = f" of {expected / 1e6:,.1f}" if expected else ""
                    rate = verifier.bytes / 1e6 / (now - started)
                    log.info("%s: %.1f%s MB (%.1f MB/s)", dest.name, verifier.bytes / 1e6, done, rate)
        if expected is not None and verifier.bytes != expected:
            raise TransientDownloadError(f"{url}: got {verifier.bytes:,} of {expected:,} bytes")
        verifier.finish()
        copy = LocalCopy(
            url=url,
            version=version,
            bytes=verifier.bytes,
            uncompressed_bytes=verifier.uncompressed_bytes,
            sha256=verifier.sha256.hexdigest(),
            downloaded_at=time.time(),
        )
        storage.publish(tmp, dest)
        copy.write(dest)
        return copy
    except BaseException:
        with contextlib.suppress(OSError):  # an object store that went away keeps its partial upload
            tmp.unlink(missing_ok=True)
        raise
