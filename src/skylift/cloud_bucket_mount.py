"""`modal.CloudBucketMount`: an S3-compatible bucket (AWS S3, Cloudflare R2, Google Cloud Storage
through its S3 interoperability endpoint, MinIO, ...) seen as a directory in the container.

Example:
    >>> import skylift as modal
    >>> app = modal.App("buckets")
    >>> creds = modal.Secret.from_dict({"AWS_ACCESS_KEY_ID": "...", "AWS_SECRET_ACCESS_KEY": "..."})
    >>> @app.function(volumes={"/bucket": modal.CloudBucketMount("my-bucket", secret=creds)})
    ... def f() -> list[str]:
    ...     import os
    ...     return os.listdir("/bucket")

skylift has no FUSE in its process runtime, so a mount is synchronised rather than mounted: the
worker downloads the objects under `key_prefix` before the container starts, uploads new and
changed files (and deletes removed ones) every few seconds while it runs and once more when it
exits, unless `read_only`. See docs/storage.md for what that means for consistency. Credentials
come from the secret: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
`AWS_SESSION_TOKEN` and `AWS_REGION` (or `GOOGLE_ACCESS_KEY_ID`/`GOOGLE_ACCESS_KEY_SECRET` for
GCS HMAC keys); without a secret the bucket is read anonymously.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .exception import InvalidError


@dataclass(frozen=True)
class CloudBucketMount:
    bucket_name: str
    bucket_endpoint_url: str | None = None
    key_prefix: str | None = None
    secret: Any = None  # a modal.Secret
    oidc_auth_role_arn: str | None = None
    read_only: bool = False
    requester_pays: bool = False
    force_path_style: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.bucket_name, str) or not self.bucket_name:
            raise InvalidError("CloudBucketMount needs a bucket_name")
        if self.bucket_endpoint_url is not None:
            parsed = urlparse(self.bucket_endpoint_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise InvalidError(f"bucket_endpoint_url {self.bucket_endpoint_url!r} must be an http(s) URL, e.g. "
                                   "https://<account>.r2.cloudflarestorage.com or https://storage.googleapis.com")
        if self.key_prefix is not None and not self.key_prefix.endswith("/"):
            raise InvalidError(f"key_prefix {self.key_prefix!r} must end with '/'")
        if self.oidc_auth_role_arn is not None:
            raise InvalidError("CloudBucketMount(oidc_auth_role_arn=...) is not supported by skylift; pass "
                               "credentials with secret=")
        if self.requester_pays and self.secret is None:
            raise InvalidError("requester_pays=True needs credentials (secret=)")
        if self.secret is not None:
            from .secret import Secret

            if not isinstance(self.secret, Secret):
                raise InvalidError("CloudBucketMount(secret=...) must be a modal.Secret")

    def _to_wire(self, mount_path: str, secret_id: str | None) -> dict[str, Any]:
        return {"mount_path": mount_path, "bucket_name": self.bucket_name,
                "endpoint_url": self.bucket_endpoint_url, "key_prefix": self.key_prefix or "",
                "read_only": self.read_only, "requester_pays": self.requester_pays,
                "force_path_style": self.force_path_style, "secret_id": secret_id}
