"""moto's S3 server on 127.0.0.1, in a process of its own, for the tests and the benchmarks of object storage: real
HTTP, which Polars' own object store needs (it does not see in-process mocks). With ``authenticate``, every
request's credentials are checked against moto's IAM, so keys it never issued are denied."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import httpx

REGION = "us-east-1"
# moto takes any key unless it authenticates; these name the test's own.
ACCESS_KEY_ID, SECRET_ACCESS_KEY = "imdb-test-key", "imdb-test-secret"


class S3Server:
    def __init__(self, log: Path, *, authenticate: bool = False) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = os.environ | ({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if authenticate else {})
        moto = Path(sys.executable).with_name("moto_server")
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.port)], env=env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"moto's server did not start: see {log}") from None
                time.sleep(0.2)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_REGION": REGION,
        }

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix``: key -> bytes."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
