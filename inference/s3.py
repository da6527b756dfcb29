"""S3 PutObject for the uploader, write-once: signed here (SigV4), sent on kept-alive
``http.client`` connections.

boto3's ``put_object`` costs about 3 ms of CPU per call on the 2-core dev host (event hooks,
endpoint rules, header objects, response parsing) and botocore's signer alone 0.25 ms; the
uploader makes two PUTs per record and must stay under 2 ms per record (bench/uploader.py:
2.4 ms with botocore's signer, 1.5 ms with this one). A PUT signed here and sent on a
kept-alive connection costs about 0.4 ms. moto checks these signatures as S3 does in the
tests (test_uploader.py). Credentials still come from boto3's chain (the task role, refreshed
before it expires), region and endpoint from ``centralllm.aws`` as for every other client.
"""

import base64
import hashlib
import hmac
import http.client
import re
import ssl
import threading
import time
from urllib.parse import quote, urlsplit

import boto3
from botocore.httpsession import get_cert_path

from centralllm import aws


class S3Error(Exception):
    """S3 answered a PUT with an error."""


class ObjectExists(S3Error):
    """The key already holds an object: a write-once PUT leaves it as it is."""


class PutClient:
    """Thread-safe: each thread keeps one connection per host."""

    def __init__(self, *, timeout: float = 10) -> None:
        self.region = aws.region()
        stand_in = aws.endpoint_url("s3")
        endpoint = urlsplit(stand_in or f"https://s3.{self.region}.amazonaws.com")
        self._https = endpoint.scheme == "https"
        self._netloc = endpoint.netloc
        # A stand-in (moto) is addressed path-style, as boto3 does; AWS by virtual host.
        self._path_style = stand_in is not None
        self.timeout = timeout
        self._credentials = boto3.session.Session().get_credentials()
        # Trusting what boto3 trusts: its CA bundle, not the image's.
        self._tls = ssl.create_default_context(cafile=get_cert_path(True))
        self._local = threading.local()

    def address(self, bucket: str, key: str) -> tuple[str, str]:
        """The host and the (encoded) path of an object."""
        path = "/" + quote(key, safe="/~")
        if self._path_style:
            return self._netloc, f"/{bucket}{path}"
        return f"{bucket}.{self._netloc}", path

    def put(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        """Store ``body`` at ``key`` only if no object is there (S3's conditional write,
        ``If-None-Match: *``); ObjectExists if one is. S3 answers 409 to a write racing
        another conditional write to the same key: an S3Error, tried again later."""
        host, path = self.address(bucket, key)
        headers = self._signed(host, path, body, content_type)
        status, answer = self._send(host, path, headers, body)
        if status == 412:
            raise ObjectExists(f"s3://{bucket}/{key} already exists")
        if status != 200:
            code = re.search(rb"<Code>([^<]*)</Code>", answer)
            reason = code[1].decode() if code else answer[:200].decode(errors="replace")
            raise S3Error(f"PUT s3://{bucket}/{key}: HTTP {status} {reason}")

    def _signed(self, host: str, path: str, body: bytes, content_type: str) -> dict[str, str]:
        """The request's headers with AWS Signature Version 4 (S3 flavour: the path as sent,
        the payload's SHA-256 in a header)."""
        if self._credentials is None:  # none at start: look again, the task role may come late
            self._credentials = boto3.session.Session().get_credentials()
            if self._credentials is None:
                raise S3Error("no AWS credentials found")
        credentials = self._credentials.get_frozen_credentials()
        now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        payload = hashlib.sha256(body).hexdigest()
        # S3 refuses an upload without Content-MD5 (or an SDK checksum) into a bucket whose
        # Object Lock sets a default retention: https://docs.aws.amazon.com/AmazonS3/latest/
        # userguide/object-lock-managing.html ("Using Content-MD5 when uploading objects").
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        # In the order SigV4 wants them signed: sorted by name.
        headers = {
            "content-md5": md5,
            "content-type": content_type,
            "host": host,
            "if-none-match": "*",
            "x-amz-content-sha256": payload,
            "x-amz-date": now,
        }
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        names = ";".join(headers)
        lines = "".join(f"{name}:{value}\n" for name, value in headers.items())
        canonical = f"PUT\n{path}\n\n{lines}\n{names}\n{payload}"
        scope = f"{now[:8]}/{self.region}/s3/aws4_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        key = f"AWS4{credentials.secret_key}".encode()
        for part in (now[:8], self.region, "s3", "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        to_sign = f"AWS4-HMAC-SHA256\n{now}\n{scope}\n{digest}"
        signature = hmac.digest(key, to_sign.encode(), "sha256").hex()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope},"
            f" SignedHeaders={names}, Signature={signature}"
        )
        return headers

    def _send(self, host: str, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        connections = self._local.__dict__.setdefault("connections", {})
        while True:
            connection = connections.get(host)
            reused = connection is not None
            if not reused:
                connection = connections[host] = self._connect(host)
            try:
                connection.request("PUT", path, body, headers)
                response = connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                del connections[host]
                # A kept-alive connection that the server closed fails on first use: once
                # more on a new one (a PUT that did arrive answers 412; the uploader then
                # finds its own bytes there).
                if not reused:
                    raise

    def _connect(self, host: str) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(host, timeout=self.timeout, context=self._tls)
        return http.client.HTTPConnection(host, timeout=self.timeout)
