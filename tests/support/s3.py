"""moto's S3 server on a loopback port: a real S3 HTTP API for tests, no network needed.

Why server mode rather than moto's in-process mock: the code under test talks HTTP through
boto3 exactly as it would to AWS or MinIO (endpoint URL, signing, conditional-put headers), so
the test covers the wire behaviour too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tests.support.postgres import free_port

__all__ = ["MotoS3", "ACCESS_KEY", "SECRET_KEY", "REGION"]

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


@dataclass
class MotoS3:
    """``ThreadedMotoServer`` on 127.0.0.1 (a thread of the test process)."""

    port: int = 0
    _server: object | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        from moto.server import ThreadedMotoServer

        self.port = self.port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def new_bucket(self) -> str:
        name = f"lake-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name
