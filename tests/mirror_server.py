"""A real HTTP server on 127.0.0.1 (or another address of this machine) that serves a folder the way IMDb's dataset
host does, and fails on demand.

It answers GET and HEAD with ETag and Last-Modified, honours If-None-Match / If-Modified-Since with 304, and
takes a queue of faults for the next GET requests: "500" (an error status), "drop" (headers promising the full
length, half the body, then the connection is closed) or "pause" (half the body, then ``paused`` is set and the rest
waits for ``resume``). ``broken`` maps a file name to the status every request for it gets, HEAD included, until
removed. ``head_delay`` makes every HEAD wait that many seconds before it answers; ``refuse_head`` answers HEAD with
405, as some servers do. A GET with ``Range: bytes=FIRST-LAST`` gets those bytes (206).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class MirrorServer:
    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root
        self.faults: deque[str] = deque()
        self.broken: dict[str, int] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.head_delay = 0.0
        self.refuse_head = False
        self.paused, self.resume = threading.Event(), threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def fail_next(self, *faults: str) -> None:
        self.faults.extend(faults)

    def gets(self, name: str | None = None) -> list[int]:
        """Status codes of the GET requests so far (for one file, if named)."""
        return [s for m, p, s in self.requests if m == "GET" and (name is None or p.endswith(name))]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def handle(self) -> None:
                # A client that gave up waiting, or closed after the headers it wanted, is no error of the server's.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

            def do_HEAD(self) -> None:
                if mirror.head_delay:
                    time.sleep(mirror.head_delay)
                if mirror.refuse_head:
                    return self._reply(405, {"Allow": "GET", "Content-Length": "0"})
                return self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _reply(self, status: int, headers: dict[str, str] | None = None) -> None:
                mirror.requests.append((self.command, self.path, status))
                self.send_response(status)
                for name, value in (headers or {"Content-Length": "0"}).items():
                    self.send_header(name, value)
                self.end_headers()

            def _serve(self, body: bool) -> None:
                path = mirror.root / self.path.lstrip("/")
                if not path.is_file():
                    return self._reply(404)
                if path.name in mirror.broken:
                    return self._reply(mirror.broken[path.name])
                if body and mirror.faults and mirror.faults[0] == "500":
                    mirror.faults.popleft()
                    return self._reply(500)
                data = path.read_bytes()
                stat = path.stat()
                etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
                validators = {"ETag": etag, "Last-Modified": last_modified}
                if self.headers.get("If-None-Match") == etag:
                    return self._reply(304, validators)
                since = self.headers.get("If-Modified-Since")
                unmodified = since and int(stat.st_mtime) <= email.utils.parsedate_to_datetime(since).timestamp()
                if unmodified and not self.headers.get("If-None-Match"):
                    return self._reply(304, validators)
                ranged = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range") or "")
                if body and ranged:
                    first, last = int(ranged[1]), min(int(ranged[2]), len(data) - 1)
                    span = {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
                    self._reply(206, {**validators, **span, "Content-Length": str(last - first + 1)})
                    self.wfile.write(data[first : last + 1])
                    return None
                self._reply(200, {**validators, "Content-Length": str(len(data)), "Content-Type": "application/gzip"})
                if not body:
                    return None
                if mirror.faults and mirror.faults[0] == "drop":
                    mirror.faults.popleft()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                if mirror.faults and mirror.faults[0] == "pause":
                    mirror.faults.popleft()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    mirror.paused.set()
                    mirror.resume.wait()
                    self.wfile.write(data[len(data) // 2 :])
                    return None
                self.wfile.write(data)
                return None

        return Handler
