"""Downloads against a real HTTP server on 127.0.0.1 and file:// URLs: conditional requests, gzip verification,
atomic replacement that keeps the previous copy on any failure, and retries with exponential backoff."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imdb_assets import download as dl
from imdb_assets.download import DownloadError, GzipVerifier, LocalCopy, RemoteVersion, download, remote_version
from tests.mirror_server import MirrorServer

NAME = "title.ratings.tsv.gz"
TEXT = b"tconst\taverageRating\tnumVotes\n" + b"".join(
    b"tt%07d\t%d.%d\t%d\n" % (n, n % 10, n % 7, n) for n in range(1, 3000)
)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / NAME).write_bytes(gzip.compress(TEXT))
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[MirrorServer]:
    """One server for the module (stopping one takes half a second), pointed at each test's folder in turn."""
    server = MirrorServer(tmp_path_factory.mktemp("unused"))
    yield server
    server.stop()


@pytest.fixture
def mirror(server: MirrorServer, served: Path) -> MirrorServer:
    server.root = served
    server.requests.clear()
    server.faults.clear()
    return server


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "data" / "raw" / NAME


class Sleeps(list):
    """A fake ``sleep`` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetch(url: str, dest: Path, **kwargs) -> dl.DownloadResult:
    kwargs.setdefault("sleep", Sleeps())
    kwargs.setdefault("timeout", 10)
    return download(url, dest, **kwargs)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.glob("*.part"))


def state(dest: Path) -> tuple[bytes, bytes]:
    return dest.read_bytes(), LocalCopy.sidecar(dest).read_bytes()


# HTTP: conditional requests.


def test_second_request_is_conditional_and_force_downloads_again(mirror, served, dest):
    source = served / NAME
    first = fetch(mirror.base_url + NAME, dest)
    assert first.changed and dest.read_bytes() == source.read_bytes()
    copy = LocalCopy.read(dest)
    assert copy == first.copy
    assert copy.url == mirror.base_url + NAME
    assert copy.sha256 == sha256(source)
    assert copy.version.etag == '"' + sha256(source)[:16] + '"'
    assert copy.version.last_modified == email.utils.formatdate(source.stat().st_mtime, usegmt=True)
    assert (copy.bytes, copy.uncompressed_bytes) == (source.stat().st_size, len(TEXT))
    assert mirror.gets(NAME) == [200]

    second = fetch(mirror.base_url + NAME, dest)
    assert not second.changed
    assert second.copy == copy
    assert mirror.gets(NAME) == [200, 304]
    assert LocalCopy.read(dest) == copy

    forced = fetch(mirror.base_url + NAME, dest, force=True)
    assert forced.changed and forced.copy.sha256 == copy.sha256
    assert mirror.gets(NAME) == [200, 304, 200]
    assert leftovers(dest) == []


def test_new_release_is_downloaded(mirror, served, dest):
    fetch(mirror.base_url + NAME, dest)
    new = gzip.compress(TEXT + b"tt9999999\t9.9\t1\n")
    (served / NAME).write_bytes(new)
    result = fetch(mirror.base_url + NAME, dest)
    assert result.changed and dest.read_bytes() == new
    assert result.copy.sha256 == hashlib.sha256(new).hexdigest() == LocalCopy.read(dest).sha256
    assert mirror.gets(NAME) == [200, 200]


# Gzip verification.


def test_multi_member_gzip_verifies(mirror, served, dest):
    a, b = gzip.compress(TEXT[:5000]), gzip.compress(TEXT[5000:])
    (served / NAME).write_bytes(a + b)  # what `cat a.gz b.gz` makes
    result = fetch(mirror.base_url + NAME, dest)
    assert result.changed and dest.read_bytes() == a + b
    assert result.copy.uncompressed_bytes == len(TEXT)
    assert gzip.decompress(dest.read_bytes()) == TEXT


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_verifier_handles_members_split_anywhere(monkeypatch, chunk):
    monkeypatch.setattr(dl, "INFLATE_LIMIT", 100)  # many bounded inflate calls per chunk
    data = gzip.compress(TEXT[:10]) + gzip.compress(b"") + gzip.compress(TEXT[10:]) + gzip.compress(b"end")
    verifier = GzipVerifier()
    for start in range(0, len(data), chunk):
        verifier.update(data[start : start + chunk])
    verifier.finish()
    assert verifier.uncompressed_bytes == len(TEXT) + 3
    assert verifier.bytes == len(data)
    assert verifier.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


def test_verifier_with_the_real_limit_on_a_highly_compressed_member():
    """One 1 MB chunk inflating to more than INFLATE_LIMIT: the member ends while its tail is being drained."""
    data = gzip.compress(bytes(dl.INFLATE_LIMIT + (8 << 20)), compresslevel=1)
    assert len(data) < dl.CHUNK
    verifier = GzipVerifier()
    verifier.update(data + gzip.compress(b"next member"))
    verifier.finish()
    assert verifier.uncompressed_bytes == dl.INFLATE_LIMIT + (8 << 20) + len(b"next member")


def bad_files() -> dict[str, tuple[bytes, str]]:
    good = gzip.compress(TEXT)
    return {
        "trailing-garbage": (good + b"this is not gzip", r"not a valid gzip stream at byte"),
        "truncated": (good[: len(good) * 2 // 3], r"truncated gzip stream: it ends mid-member"),
        "truncated-trailer": (good[:-4], r"truncated gzip stream"),
        "truncated-second-member": (good + gzip.compress(b"more")[:12], r"truncated gzip stream"),
        "not-gzip": (TEXT, r"not a valid gzip stream at byte"),
        "empty": (b"", r"the file is empty"),
    }


@pytest.mark.parametrize("scheme", ["http", "file"])
@pytest.mark.parametrize("case", list(bad_files()))
def test_bad_file_fails_and_keeps_the_previous_copy(mirror, served, dest, scheme, case):
    base = mirror.base_url if scheme == "http" else served.as_uri() + "/"
    url = base + NAME
    fetch(url, dest)
    before = state(dest)
    data, message = bad_files()[case]
    (served / NAME).write_bytes(data)
    os.utime(served / NAME, (1_000_000_000, 1_000_000_000))  # a new version for file://, whatever the clock
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match=message):
        fetch(url, dest, sleep=sleeps)
    assert sleeps == [], "a bad file is not retried"
    assert state(dest) == before
    assert leftovers(dest) == []
    assert gzip.decompress(dest.read_bytes()) == TEXT
    if scheme == "http":
        assert mirror.gets(NAME) == [200, 200]


def test_bad_first_download_leaves_nothing(mirror, served, dest):
    (served / NAME).write_bytes(b"<html>maintenance</html>")
    with pytest.raises(DownloadError, match="not a valid gzip stream"):
        fetch(mirror.base_url + NAME, dest)
    assert not dest.exists() and not LocalCopy.sidecar(dest).exists()
    assert leftovers(dest) == []


# HTTP: errors and retries.


def test_404_is_not_retried(mirror, dest):
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match=r"missing\.tsv\.gz: HTTP 404"):
        fetch(mirror.base_url + "missing.tsv.gz", dest, sleep=sleeps)
    assert mirror.gets() == [404]
    assert sleeps == []
    assert not dest.exists() and leftovers(dest) == []


def test_500_is_retried_with_exponential_backoff(mirror, served, dest):
    mirror.fail_next("500", "500")
    sleeps = Sleeps()
    result = fetch(mirror.base_url + NAME, dest, sleep=sleeps, backoff_seconds=0.25, max_attempts=5)
    assert result.changed and dest.read_bytes() == (served / NAME).read_bytes()
    assert mirror.gets(NAME) == [500, 500, 200]
    assert sleeps == [0.25, 0.5]


def test_500_on_every_attempt_gives_up_and_keeps_the_previous_copy(mirror, served, dest):
    fetch(mirror.base_url + NAME, dest)
    before = state(dest)
    (served / NAME).write_bytes(gzip.compress(TEXT + b"tt9999999\t1.0\t1\n"))
    mirror.fail_next(*["500"] * 4)
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match=r"HTTP 500 \(gave up after 4 attempts\)"):
        fetch(mirror.base_url + NAME, dest, sleep=sleeps, backoff_seconds=1.5, max_attempts=4)
    assert sleeps == [1.5, 3.0, 6.0]
    assert mirror.gets(NAME) == [200, 500, 500, 500, 500]
    assert state(dest) == before and leftovers(dest) == []


def test_connection_dropped_mid_body_is_retried(mirror, served, dest):
    mirror.fail_next("drop")
    sleeps = Sleeps()
    result = fetch(mirror.base_url + NAME, dest, sleep=sleeps, backoff_seconds=0.1)
    assert result.changed and dest.read_bytes() == (served / NAME).read_bytes()
    assert result.copy.sha256 == sha256(served / NAME)
    assert mirror.gets(NAME) == [200, 200]  # the first one sent half its body, then closed the connection
    assert sleeps == [0.1]
    assert leftovers(dest) == []


def test_connection_refused_is_retried_then_gives_up(dest):
    server = MirrorServer(dest.parent)
    url = server.base_url + NAME
    server.stop()  # nothing listens on that port any more
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match=r"ConnectError.*gave up after 3 attempts"):
        fetch(url, dest, sleep=sleeps, backoff_seconds=0.5, max_attempts=3)
    assert sleeps == [0.5, 1.0]


# file:// URLs: size and mtime.


def test_file_url_compares_size_and_mtime(served, dest):
    source = served / NAME
    url = source.as_uri()
    first = fetch(url, dest)
    assert first.changed and dest.read_bytes() == source.read_bytes()
    stat = source.stat()
    assert first.copy.version == RemoteVersion(size=stat.st_size, mtime=stat.st_mtime)
    assert first.copy.sha256 == sha256(source) and first.copy.uncompressed_bytes == len(TEXT)

    again = fetch(url, dest)
    assert not again.changed and again.copy == first.copy

    os.utime(source, (stat.st_atime, stat.st_mtime + 10))  # same bytes, touched
    touched = fetch(url, dest)
    assert touched.changed
    assert touched.copy.version == RemoteVersion(size=stat.st_size, mtime=stat.st_mtime + 10)
    assert LocalCopy.read(dest) == touched.copy
    assert not fetch(url, dest).changed


def test_file_url_missing_file(served, dest):
    with pytest.raises(DownloadError, match="no such file"):
        fetch((served / "absent.tsv.gz").as_uri(), dest)
    assert not dest.exists()


def test_file_url_with_escaped_characters(tmp_path, dest):
    folder = tmp_path / "IMDb data (copy)"
    folder.mkdir()
    (folder / NAME).write_bytes(gzip.compress(TEXT))
    url = (folder / NAME).as_uri()
    assert "%20" in url
    assert fetch(url, dest).changed and gzip.decompress(dest.read_bytes()) == TEXT


# remote_version.


def test_remote_version_over_http_is_a_head_request(mirror, served):
    source = served / NAME
    version = remote_version(mirror.base_url + NAME)
    assert version == RemoteVersion(
        etag='"' + sha256(source)[:16] + '"',
        last_modified=email.utils.formatdate(source.stat().st_mtime, usegmt=True),
    )
    assert version.key() == version.etag
    assert [(m, s) for m, _, s in mirror.requests] == [("HEAD", 200)]
    with pytest.raises(DownloadError, match="HTTP 404"):
        remote_version(mirror.base_url + "missing.tsv.gz")


def test_remote_version_matches_what_download_records(mirror, dest):
    url = mirror.base_url + NAME
    assert fetch(url, dest).copy.version == remote_version(url)


def test_remote_version_of_a_file_url(served):
    source = served / NAME
    stat = source.stat()
    version = remote_version(source.as_uri())
    assert version == RemoteVersion(size=stat.st_size, mtime=stat.st_mtime)
    assert version.key() == f"{stat.st_size}-{stat.st_mtime}"
    os.utime(source, (stat.st_atime, stat.st_mtime - 3600))
    assert remote_version(source.as_uri()).mtime == stat.st_mtime - 3600
