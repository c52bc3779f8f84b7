"""The host's package-index settings, carried into image builds.

Machines behind a TLS-intercepting proxy or a private index configure pip once (`/etc/pip.conf`,
`PIP_*` variables) and expect every install to follow. uv reads none of pip's configuration, so
the worker translates it: index URLs and find-links become uv flags, the CA bundle becomes
`SSL_CERT_FILE` (plus uv's switch to trust the system store), and `PIP_*`/`UV_*` variables pass
through unchanged for the pip fallback.

Precedence, as pip's: config files < `PIP_*` environment < the step's own arguments.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# Variables that hold certificates or proxies: builds need them as much as pip settings.
_PASS_THROUGH = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY",
                 "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy")


@dataclass
class IndexSettings:
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    cert: str | None = None
    timeout: str | None = None


def config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files, lowest precedence first."""
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    home = environ.get("HOME")
    if home:
        files += [Path(home) / ".pip" / "pip.conf", Path(home) / ".config" / "pip" / "pip.conf"]
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return files


def _split(value: str) -> list[str]:
    return [v for v in value.split() if v]


def read_settings(environ: Mapping[str, str], files: list[Path] | None = None) -> IndexSettings:
    """The host's effective index settings from pip's config files and `PIP_*` variables."""
    settings = IndexSettings()
    parser = configparser.ConfigParser(interpolation=None)
    for path in files if files is not None else config_files(environ):
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
    values: dict[str, str] = {}
    for section in ("global", "install"):
        if parser.has_section(section):
            values.update({k.replace("_", "-"): v for k, v in parser.items(section)})
    for key, value in environ.items():
        if key.startswith("PIP_") and value:
            values[key[4:].lower().replace("_", "-")] = value
    settings.index_url = values.get("index-url") or None
    settings.extra_index_urls = _split(values.get("extra-index-url", ""))
    settings.find_links = _split(values.get("find-links", ""))
    settings.trusted_hosts = _split(values.get("trusted-host", ""))
    settings.cert = values.get("cert") or None
    settings.timeout = values.get("default-timeout") or values.get("timeout") or None
    return settings


def build_env(environ: Mapping[str, str], settings: IndexSettings) -> dict[str, str]:
    """Environment variables to add for an install step (pip or uv)."""
    env = {k: v for k, v in environ.items() if k.startswith(("PIP_", "UV_")) or k in _PASS_THROUGH}
    cert = settings.cert or environ.get("SSL_CERT_FILE")
    if not cert and os.path.exists(SYSTEM_CA_BUNDLE):
        cert = SYSTEM_CA_BUNDLE
    if cert:
        env["SSL_CERT_FILE"] = cert
        env.setdefault("PIP_CERT", cert)
    # uv ships its own CA roots; a proxy's CA is only in the system store. UV_SYSTEM_CERTS (uv >= 0.11,
    # the floor in pyproject.toml) replaced UV_NATIVE_TLS, which now prints a deprecation on every build.
    env.setdefault("UV_SYSTEM_CERTS", "1")
    if settings.timeout:
        env.setdefault("UV_HTTP_TIMEOUT", settings.timeout)
    # Hard links into uv's cache would let a later step that edits a file in place corrupt the cache.
    env.setdefault("UV_LINK_MODE", "copy")
    return env


def index_flags(settings: IndexSettings, *, index_url: str | None = None, extra_index_url: str | None = None,
                find_links: str | None = None) -> list[str]:
    """Command-line flags for `uv pip install` / `pip install`: the step's own settings win."""
    flags: list[str] = []
    chosen = index_url or settings.index_url
    if chosen:
        flags += ["--index-url", chosen]
    for url in ([extra_index_url] if extra_index_url else []) + settings.extra_index_urls:
        flags += ["--extra-index-url", url]
    for link in ([find_links] if find_links else []) + settings.find_links:
        flags += ["--find-links", link]
    return flags


def uv_trust_flags(settings: IndexSettings) -> list[str]:
    return [flag for host in settings.trusted_hosts for flag in ("--allow-insecure-host", host)]


def pip_trust_flags(settings: IndexSettings) -> list[str]:
    return [flag for host in settings.trusted_hosts for flag in ("--trusted-host", host)]
