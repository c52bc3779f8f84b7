"""A small S3 client (AWS Signature V4 over `http.client`): list, get, put, delete.

Enough for CloudBucketMount's sync against AWS S3, Cloudflare R2, Google Cloud Storage's S3
interoperability endpoint (HMAC keys), MinIO and moto, without boto3's ~100 MB of dependencies.
Blocking: the worker runs it in threads. Path-style addressing for custom endpoints (what R2,
GCS and MinIO accept), virtual-hosted style for AWS.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlparse

UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CHUNK = 1024 * 1024


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"S3 {status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


def credentials_from_env(env: dict[str, str]) -> Credentials | None:
    """Modal's secret conventions: AWS_* keys, or GOOGLE_ACCESS_KEY_ID/SECRET for GCS HMAC keys."""
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN"))
    if env.get("GOOGLE_ACCESS_KEY_ID") and env.get("GOOGLE_ACCESS_KEY_SECRET"):
        return Credentials(env["GOOGLE_ACCESS_KEY_ID"], env["GOOGLE_ACCESS_KEY_SECRET"])
    return None


def region_for(endpoint_url: str | None, env: dict[str, str]) -> str:
    if env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"):
        return env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
    host = (urlparse(endpoint_url).hostname or "") if endpoint_url else ""
    if host.endswith("r2.cloudflarestorage.com") or host == "storage.googleapis.com":
        return "auto"
    return "us-east-1"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(method: str, host: str, path: str, query: dict[str, str], headers: dict[str, str], payload_hash: str,
         credentials: Credentials, region: str, now: datetime.datetime) -> dict[str, str]:
    """The headers to add for SigV4 (pure, so it is tested against AWS's published example)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    out = {"x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    if credentials.session_token:
        out["x-amz-security-token"] = credentials.session_token
    all_headers = {k.lower(): " ".join(v.strip().split()) for k, v in {**headers, **out, "host": host}.items()}
    signed = ";".join(sorted(all_headers))
    canonical_headers = "".join(f"{k}:{all_headers[k]}\n" for k in sorted(all_headers))
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    canonical = "\n".join([method, quote(path, safe="/-_.~"), canonical_query, canonical_headers, signed, payload_hash])
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + credentials.secret_key).encode(), date), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                            f"SignedHeaders={signed}, Signature={signature}")
    return out


class S3Client:
    page_size = 1000  # ListObjectsV2's maximum

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, credentials: Credentials | None = None,
                 region: str = "us-east-1", force_path_style: bool = False, requester_pays: bool = False,
                 timeout: float = 60.0) -> None:
        self.bucket = bucket
        self.credentials = credentials
        self.region = region
        self.requester_pays = requester_pays
        self.timeout = timeout
        if endpoint_url:
            parsed = urlparse(endpoint_url)
            self.scheme, self.host = parsed.scheme, parsed.netloc
            self.base = parsed.path.rstrip("/") + "/" + bucket
        elif force_path_style or "." in bucket:
            self.scheme, self.host, self.base = "https", f"s3.{region}.amazonaws.com", "/" + bucket
        else:
            self.scheme, self.host, self.base = "https", f"{bucket}.s3.{region}.amazonaws.com", ""
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _request(self, method: str, key: str = "", query: dict[str, str] | None = None,
                 body: bytes | BinaryIO | None = None, payload_hash: str = EMPTY_SHA256,
                 headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        query = query or {}
        path = self.base + "/" + key if key else (self.base or "/")
        hdrs = dict(headers or {})
        if self.requester_pays:
            hdrs["x-amz-request-payer"] = "requester"
        if self.credentials is not None:
            now = datetime.datetime.now(datetime.timezone.utc)
            hdrs.update(sign(method, self.host, path, query, hdrs, payload_hash, self.credentials, self.region, now))
        url = quote(path, safe="/-_.~")
        if query:
            url += "?" + "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
        for attempt in range(2):  # a kept-alive connection the server closed: reconnect once
            conn = self._connection()
            try:
                if hasattr(body, "seek"):
                    body.seek(0)  # type: ignore[union-attr]
                conn.request(method, url, body=body, headers=hdrs)
                response = conn.getresponse()
            except (http.client.HTTPException, ConnectionError, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
                continue
            if response.status >= 300:
                data = response.read()
                code, message = "Error", data.decode(errors="replace")[:300]
                try:
                    root = ET.fromstring(data)
                    code = root.findtext("Code") or code
                    message = root.findtext("Message") or message
                except ET.ParseError:
                    pass
                raise S3Error(response.status, code, message)
            return response
        raise AssertionError("unreachable")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": str(self.page_size)}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring(self._request("GET", query=query).read())
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for item in root.iter(f"{ns}Contents"):
                yield ObjectInfo(item.findtext(f"{ns}Key") or "", int(item.findtext(f"{ns}Size") or 0),
                                 (item.findtext(f"{ns}ETag") or "").strip('"'))
            if (root.findtext(f"{ns}IsTruncated") or "false").lower() != "true":
                return
            token = root.findtext(f"{ns}NextContinuationToken")
            if not token:
                return

    def get(self, key: str, dest: Path) -> int:
        response = self._request("GET", key)
        size = 0
        with open(dest, "wb") as f:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                size += len(chunk)
        return size

    def get_bytes(self, key: str) -> bytes:
        return self._request("GET", key).read()

    def put(self, key: str, source: Path | bytes) -> None:
        if isinstance(source, bytes):
            self._request("PUT", key, body=source, payload_hash=hashlib.sha256(source).hexdigest(),
                          headers={"Content-Length": str(len(source))}).read()
            return
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
            size = f.tell()
            self._request("PUT", key, body=f, payload_hash=digest.hexdigest(),
                          headers={"Content-Length": str(size)}).read()

    def create_bucket(self) -> None:
        self._request("PUT", "").read()

    def delete(self, key: str) -> None:
        self._request("DELETE", key).read()
