"""CloudBucketMount against a real S3-compatible server (moto) on loopback, and the SigV4 client."""

from __future__ import annotations

import datetime
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import skylift as modal
from skylift.worker.bucket_sync import BucketSync
from skylift.worker.s3 import Credentials, S3Client, S3Error, sign

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1"}

app = modal.App("e2e-buckets")


def test_sigv4_matches_aws_published_example() -> None:
    # "Example: GET Object" from AWS's Signature Version 4 documentation for S3.
    headers = sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, {"Range": "bytes=0-9"},
                   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                   Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), "us-east-1",
                   datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc))
    assert headers["Authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        " Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        pytest.skip("moto[server] is not installed (pip install -e '.[dev]')")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _client(url: str, bucket: str) -> S3Client:
    return S3Client(bucket, endpoint_url=url, credentials=Credentials(CREDS["AWS_ACCESS_KEY_ID"],
                                                                      CREDS["AWS_SECRET_ACCESS_KEY"]))


def test_bucket_sync_in_and_out(s3_url: str, tmp_path: Path) -> None:
    client = _client(s3_url, "sync-bucket")
    client.create_bucket()
    for i in range(60):
        client.put(f"pre/many/{i:04d}", b"x")
    client.put("pre/keep.txt", b"keep")
    client.put("pre/sp ace+plus.txt", b"odd key")
    client.put("outside.txt", b"not under the prefix")
    spec = {"bucket_name": "sync-bucket", "endpoint_url": s3_url, "key_prefix": "pre/", "credentials": CREDS}
    sync = BucketSync.from_spec(spec, tmp_path / "mnt")
    sync.client.page_size = 25  # several pages of ListObjectsV2
    assert sync.sync_in() == 62
    assert (tmp_path / "mnt" / "keep.txt").read_bytes() == b"keep"
    assert (tmp_path / "mnt" / "sp ace+plus.txt").read_bytes() == b"odd key"
    assert not (tmp_path / "mnt" / "outside.txt").exists()
    (tmp_path / "mnt" / "new" / "file.txt").parent.mkdir()
    (tmp_path / "mnt" / "new" / "file.txt").write_text("new")
    (tmp_path / "mnt" / "keep.txt").unlink()
    assert sync.sync_out(final=True) == (1, 1)
    assert client.get_bytes("pre/new/file.txt") == b"new"
    with pytest.raises(S3Error) as info:
        client.get_bytes("pre/keep.txt")
    assert info.value.status == 404
    assert sync.sync_out(final=True) == (0, 0)  # nothing changed since
    read_only = BucketSync.from_spec({**spec, "read_only": True}, tmp_path / "ro")
    read_only.sync_in()
    (tmp_path / "ro" / "local-only.txt").write_text("x")
    assert read_only.sync_out(final=True) == (0, 0)
    with pytest.raises(S3Error) as info:
        _client(s3_url, "no-such-bucket").get_bytes("x")
    assert info.value.status == 404 and info.value.code == "NoSuchBucket"


def test_cloud_bucket_mount_in_a_container(platform: object, s3_url: str) -> None:
    client = _client(s3_url, "mounted")
    client.create_bucket()
    client.put("data/in.txt", b"from the bucket")
    mount = modal.CloudBucketMount("mounted", bucket_endpoint_url=s3_url, key_prefix="data/",
                                   secret=modal.Secret.from_dict(CREDS))

    @app.function(volumes={"/bucket": mount}, serialized=True)
    def copy() -> str:
        with open("/bucket/in.txt") as f:
            text = f.read()
        with open("/bucket/out.txt", "w") as f:
            f.write(text.upper())
        return text

    with app.run():
        assert copy.remote() == "from the bucket"
    deadline = time.monotonic() + 30  # the container's exit (and its last sync) follows the app's stop
    while time.monotonic() < deadline:
        try:
            assert client.get_bytes("data/out.txt") == b"FROM THE BUCKET"
            return
        except S3Error:
            time.sleep(0.1)
    raise AssertionError("the file written in the container never reached the bucket")


def test_cloud_bucket_mount_arguments() -> None:
    with pytest.raises(modal.exception.InvalidError, match="end with '/'"):
        modal.CloudBucketMount("b", key_prefix="no-slash")
    with pytest.raises(modal.exception.InvalidError, match="http"):
        modal.CloudBucketMount("b", bucket_endpoint_url="ftp://x")
