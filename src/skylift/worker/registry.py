"""A client for OCI/Docker registries (the v2 HTTP API), enough to pull an image.

    ref = parse_reference("python:3.12-slim")          # registry-1.docker.io/library/python:3.12-slim
    client = RegistryClient(ref, credentials=None)
    image = client.resolve("linux", "amd64")           # manifest lists / OCI indexes → one platform
    with client.blob(image.layers[0].digest) as stream: ...   # verified against its digest by the reader

Authentication follows the registry's challenge: `WWW-Authenticate: Bearer realm=…,service=…,scope=…`
gets a token from the realm (with the credentials, if any, as Basic auth), `Basic` sends the
credentials directly. Redirects (blobs usually live on a CDN) are followed by hand so the
registry's Authorization header never reaches another host. Loopback registries and those in
`$SKYLIFT_INSECURE_REGISTRIES` (comma-separated `host:port`) are spoken to over plain HTTP.
TLS verifies with the host's CA bundle; proxies come from the usual environment variables.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DOCKER_HUB = "registry-1.docker.io"
INSECURE_ENV = "SKYLIFT_INSECURE_REGISTRIES"
TIMEOUT = 60.0
MAX_MANIFEST_BYTES = 4 << 20

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))


class RegistryError(Exception):
    """Pulling failed; the message names the image, the registry and what it answered."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" + (f"@{self.digest}" if self.digest else f":{self.tag or 'latest'}")


def parse_reference(text: str) -> Reference:
    """An image reference as Docker reads it.

    Example:
        >>> parse_reference("python:3.12-slim")
        Reference(registry='registry-1.docker.io', repository='library/python', tag='3.12-slim', digest=None)
        >>> str(parse_reference("127.0.0.1:5000/team/app@sha256:" + "a" * 64))[:31]
        '127.0.0.1:5000/team/app@sha256:'
    """
    name = text.strip()
    digest = None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise RegistryError(f"image reference {text!r}: the digest must be sha256:<64 hex digits>")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in ("docker.io", "index.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", repository):
        raise RegistryError(f"image reference {text!r}: {repository!r} is not a valid repository name")
    return Reference(registry, repository, tag if tag or digest else "latest", digest)


@dataclass(frozen=True)
class Blob:
    digest: str
    media_type: str
    size: int


@dataclass
class ImageManifest:
    digest: str
    config: dict[str, Any]
    layers: list[Blob] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        pairs = (self.config.get("config") or {}).get("Env") or []
        return dict(p.split("=", 1) for p in pairs if "=" in p)

    @property
    def workdir(self) -> str | None:
        return (self.config.get("config") or {}).get("WorkingDir") or None


def _is_loopback(host: str) -> bool:
    name = host[1:host.find("]")] if host.startswith("[") else host.split(":")[0]
    return name in ("localhost", "::1") or name.startswith("127.")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # followed by hand, without the registry's credentials


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…"` → ("bearer", {realm, service, …})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class RegistryClient:
    def __init__(self, ref: Reference, credentials: tuple[str, str] | None = None, *,
                 ca_file: str | None = None, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self.ref = ref
        self.credentials = credentials
        insecure = {h.strip() for h in env.get(INSECURE_ENV, "").split(",") if h.strip()}
        self.scheme = "http" if _is_loopback(ref.registry) or ref.registry in insecure else "https"
        self.base = f"{self.scheme}://{ref.registry}/v2/{ref.repository}"
        context = ssl.create_default_context(cafile=ca_file or _ca_bundle(env))
        handlers: list[Any] = [_NoRedirect(), urllib.request.HTTPSHandler(context=context)]
        if _is_loopback(ref.registry):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        self._authorization: str | None = None

    # -- HTTP --------------------------------------------------------------------------------

    def _open(self, url: str, headers: dict[str, str]) -> Any:
        authorized = url.startswith(f"{self.scheme}://{self.ref.registry}/")
        for _ in range(8):  # redirects
            request = urllib.request.Request(url, headers=dict(headers))
            if authorized and self._authorization:
                request.add_header("Authorization", self._authorization)
            try:
                return self._opener.open(request, timeout=TIMEOUT)
            except urllib.error.HTTPError as exc:
                if exc.code in (301, 302, 303, 307, 308) and exc.headers.get("Location"):
                    url = urllib.parse.urljoin(url, exc.headers["Location"])
                    authorized = url.startswith(f"{self.scheme}://{self.ref.registry}/")
                    exc.close()
                    continue
                if exc.code == 401 and authorized and self._authenticate(exc.headers.get("WWW-Authenticate", "")):
                    exc.close()
                    continue
                body = exc.read(2000).decode(errors="replace")
                exc.close()
                raise RegistryError(self._explain(exc.code, url, body)) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise RegistryError(f"can't reach the registry {self.ref.registry} for {self.ref}: {reason}") from None
        raise RegistryError(f"too many redirects fetching {url}")

    def _explain(self, code: int, url: str, body: str) -> str:
        what = f"{self.ref} ({url})"
        if code == 401:
            hint = ("pass credentials" if self.credentials is None else "the credentials were refused")
            return f"the registry {self.ref.registry} refused access to {what}: 401 unauthorized ({hint})"
        if code == 404:
            return f"{self.ref} was not found in the registry {self.ref.registry} (404): {body.strip()[:300]}"
        return f"the registry {self.ref.registry} answered {code} for {what}: {body.strip()[:300]}"

    def _authenticate(self, challenge: str) -> bool:
        """Answer a 401's challenge; False when there's nothing new to try."""
        scheme, params = _parse_challenge(challenge)
        basic = None
        if self.credentials is not None:
            basic = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        if scheme == "basic":
            if basic is None or self._authorization == basic:
                return False
            self._authorization = basic
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.ref.repository}:pull")
        token_url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
        request = urllib.request.Request(token_url)
        if basic is not None:
            request.add_header("Authorization", basic)
        try:
            with self._opener.open(request, timeout=TIMEOUT) as response:
                answer = json.loads(response.read(1 << 20))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RegistryError(f"getting a pull token for {self.ref} from {params['realm']} failed: {exc}") from None
        token = answer.get("token") or answer.get("access_token")
        if not token:
            raise RegistryError(f"the token service {params['realm']} gave no token for {self.ref}")
        bearer = f"Bearer {token}"
        if self._authorization == bearer:
            return False
        self._authorization = bearer
        return True

    # -- manifests and blobs -----------------------------------------------------------------

    def manifest(self, reference: str) -> tuple[str, bytes, str]:
        """(media type, body, digest) of a manifest or index."""
        with self._open(f"{self.base}/manifests/{reference}", {"Accept": ACCEPT}) as response:
            body = response.read(MAX_MANIFEST_BYTES + 1)
            media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"the manifest of {self.ref} is larger than {MAX_MANIFEST_BYTES} bytes")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"the manifest of {self.ref} does not match its digest {reference} (got {digest})")
        if media_type not in (*INDEX_TYPES, *MANIFEST_TYPES):
            media_type = str(json.loads(body).get("mediaType") or media_type)
        return media_type, body, digest

    def resolve(self, os_name: str = "linux", architecture: str = "amd64") -> ImageManifest:
        """The image manifest and config for one platform (manifest lists and OCI indexes resolved)."""
        media_type, body, digest = self.manifest(self.ref.reference)
        document = json.loads(body)
        if media_type in INDEX_TYPES or "manifests" in document:
            choices = document.get("manifests") or []
            platforms = [(m, m.get("platform") or {}) for m in choices]
            chosen = next((m for m, p in platforms if p.get("os") == os_name and p.get("architecture") == architecture),
                          None)
            if chosen is None:
                offered = sorted({f"{p.get('os')}/{p.get('architecture')}" for _, p in platforms})
                raise RegistryError(f"{self.ref} has no {os_name}/{architecture} image (it has: {', '.join(offered)})")
            media_type, body, digest = self.manifest(chosen["digest"])
            document = json.loads(body)
        if document.get("schemaVersion") == 1:
            raise RegistryError(f"{self.ref} uses the old Docker schema 1 manifest, which is not supported")
        config_blob = document.get("config") or {}
        with self.blob(config_blob["digest"]) as stream:
            config = json.loads(stream.read(MAX_MANIFEST_BYTES))
        layers = [Blob(layer["digest"], layer.get("mediaType", ""), int(layer.get("size") or 0))
                  for layer in document.get("layers") or []]
        return ImageManifest(digest, config, layers)

    @contextmanager
    def blob(self, digest: str) -> Iterator[DigestReader]:
        """A stream of a blob's bytes; `verify()` after reading it all checks the digest."""
        with self._open(f"{self.base}/blobs/{digest}", {}) as response:
            yield DigestReader(response, digest)


class DigestReader:
    """Reads a stream while hashing it; `verify()` raises RegistryError unless it matched `digest`."""

    def __init__(self, stream: IO[bytes], digest: str) -> None:
        algorithm, _, self.expected = digest.partition(":")
        if algorithm != "sha256":
            raise RegistryError(f"digest {digest!r}: only sha256 digests are supported")
        self.digest = digest
        self._stream = stream
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        return data

    def verify(self) -> None:
        while self.read(1 << 20):
            pass
        if self._hash.hexdigest() != self.expected:
            raise RegistryError(f"blob {self.digest} arrived corrupted (sha256 {self._hash.hexdigest()})")


def _ca_bundle(environ: dict[str, str]) -> str | None:
    for candidate in (environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def docker_config_credentials(registry: str, environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """Credentials for `registry` from the worker host's Docker config (`docker login`), if any."""
    env = dict(os.environ if environ is None else environ)
    base = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path(env.get("HOME", "/root")) / ".docker"
    try:
        auths = json.loads((base / "config.json").read_text()).get("auths") or {}
    except (OSError, ValueError):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io", "docker.io"]
    for key in keys:
        entry = auths.get(key) or {}
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
        if entry.get("username"):
            return str(entry["username"]), str(entry.get("password") or "")
    return None
