"""Image build steps: a command run on overlay(parent layers) whose changes become the new layer.

The step runs in the same sandbox as a container (namespaces, capabilities, seccomp), with what
package managers need from the host, read-only:

- DNS (`/etc/resolv.conf`) and the network through NAT (`network=False`: loopback only);
- the host's CA bundle at /run/skylift-build/ca-certificates.crt, with the variables that TLS clients
  read (`SSL_CERT_FILE`, `PIP_CERT`, `REQUESTS_CA_BUNDLE`, …) pointing at it — package traffic through a
  TLS-intercepting proxy verifies, whatever certificates the image itself ships;
- pip's global configuration (/etc/pip.conf, /etc/xdg/pip), uv's (/etc/uv), local `find-links`
  directories, and `PIP_*`/`UV_*`/proxy variables; apt gets the CA bundle and the host's proxy
  settings through `APT_CONFIG`.

Unlike a running container, `/tmp` is part of the image (as with `docker build`). The files bubblewrap
mounts over are not: any mount point it had to create is removed from the layer afterwards, so a
layer holds only what the command changed — including whiteouts for what it deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from . import host, seccomp
from . import network as _network
from .bwrap import BwrapOptions, build_args, root_mount_targets
from .launch import container_env, etc_files, launcher_argv
from .overlay import mount_overlay, unmount

BUILD_DIR = "/run/skylift-build"
CA_PATH = f"{BUILD_DIR}/ca-certificates.crt"
APT_CONF_PATH = f"{BUILD_DIR}/apt.conf"
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
_CERT_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                   "NODE_EXTRA_CA_CERTS", "AWS_CA_BUNDLE", "HTTPLIB2_CA_CERTS")
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                    "no_proxy", "all_proxy")
_CONFIG_PATHS = ("/etc/pip.conf", "/etc/xdg/pip", "/etc/uv")


def host_ca_bundle(environ: Mapping[str, str]) -> str | None:
    for candidate in (environ.get("SSL_CERT_FILE"), *HOST_CA_BUNDLES):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def _apt_proxy_lines() -> list[str]:
    """The host's apt proxy settings (`Acquire::http::Proxy` and friends), as apt.conf lines."""
    apt_config = host.tool("apt-config")
    if apt_config is None:
        return []
    try:
        dump = subprocess.run([apt_config, "dump"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in dump.splitlines()
            if line.startswith("Acquire::") and "::Proxy" in line.split(" ", 1)[0]]


def build_environment(environ: Mapping[str, str], env: Mapping[str, str], has_ca: bool) -> dict[str, str]:
    """A build step's environment: the host's package settings, then the caller's `env` on top."""
    carried = {k: v for k, v in environ.items()
               if k.startswith(("PIP_", "UV_")) or k in _PROXY_VARIABLES}
    if has_ca:
        for name in _CERT_VARIABLES:
            carried[name] = CA_PATH
        carried["UV_SYSTEM_CERTS"] = "1"  # not UV_NATIVE_TLS: uv >= 0.11 warns it is deprecated
        carried["APT_CONFIG"] = APT_CONF_PATH
    elif "PIP_CERT" in carried:
        del carried["PIP_CERT"]
    carried.setdefault("DEBIAN_FRONTEND", "noninteractive")
    return container_env({**carried, **env})


def _config_binds(environ: Mapping[str, str]) -> list[tuple[str, str, bool]]:
    binds = [(p, p, True) for p in _CONFIG_PATHS if os.path.exists(p)]
    for link in environ.get("PIP_FIND_LINKS", "").split():
        if link.startswith("/") and os.path.isdir(link) and link not in {b[1] for b in binds}:
            binds.append((link, link, True))
    return binds


def _first_missing(root: Path, target: str) -> Path | None:
    """The highest component of `target` missing under `root` (None if it exists, or a symlink is in the way)."""
    path = root
    for part in PurePosixPath(target).parts[1:]:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path
        if stat.S_ISLNK(mode):
            return None
    return None


def _remove_stub(root: Path, target: str, top: Path) -> None:
    """Delete the empty file or directories bubblewrap created for a mount, up to `top`."""
    path = root / target.lstrip("/")
    chain = []
    p = path
    while True:
        chain.append(p)
        if p in (top, root):
            break
        p = p.parent
    for p in chain:
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        try:
            if stat.S_ISDIR(st.st_mode):
                p.rmdir()  # fails when the step put something there: then it belongs to the layer
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0 and p == path:
                p.unlink()
            else:
                return
        except OSError:
            return


def run_build_step(lower_layers: list[Path], upper_dir: Path, command: list[str], env: dict[str, str], cwd: str,
                   log: Callable[[str], None], network: bool = True,
                   binds: Sequence[tuple[Path | str, str, bool]] = ()) -> int:
    """Run `command` on overlay(`lower_layers`, lowest first); its changes land in `upper_dir`.

    Output (stdout and stderr together) goes to `log` line by line. Returns the exit code
    (128 + N if killed by signal N). The caller decides whether a failed step's `upper_dir` is kept.
    `binds` ((host path, container path, read_only)) are shown during the step only: their mount
    points are removed from the layer afterwards like the others.
    """
    upper_dir.mkdir(parents=True, exist_ok=True)
    scratch = upper_dir.parent / f".{upper_dir.name}.build-{uuid.uuid4().hex[:8]}"
    work, rootfs = scratch / "work", scratch / "root"
    ca = host_ca_bundle(os.environ)
    netns: _network.Netns | None = None
    seccomp_fd = -1
    mounted = False
    try:
        mount_overlay(lower_layers, upper_dir, work, rootfs)
        mounted = True
        files = etc_files(scratch / "etc", "skylift-build", host.resolv_conf())
        if ca is not None:
            files.append((Path(ca), CA_PATH))
            apt_conf = scratch / "etc" / "apt.conf"
            apt_conf.write_text("\n".join([f'Acquire::https::CaInfo "{CA_PATH}";', *_apt_proxy_lines()]) + "\n")
            files.append((apt_conf, APT_CONF_PATH))
        options = BwrapOptions(
            rootfs=rootfs, command=command, cwd=cwd, hostname="skylift-build",
            binds=[*_config_binds(os.environ), *((str(h), c, ro) for h, c, ro in binds)],
            files=files, unshare_net=not network, private_tmp=False,
        )
        stubs = [(t, top) for t in root_mount_targets(options) if (top := _first_missing(rootfs, t)) is not None]
        if network:
            netns = _network.pool().acquire()
        seccomp_fd = os.open(seccomp.compiled_filter(host.runtime_dir()), os.O_RDONLY | os.O_CLOEXEC)
        options.seccomp_fd = seccomp_fd
        argv = launcher_argv(build_args(host.readonly_bwrap(), options), [], netns.path if netns else None)
        with subprocess.Popen(argv, env=build_environment(os.environ, env, ca is not None), pass_fds=(seccomp_fd,),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True) as process:
            os.close(seccomp_fd)
            seccomp_fd = -1
            assert process.stdout is not None
            for raw in process.stdout:
                log(raw.decode(errors="replace").rstrip("\n"))
            code = process.wait()
        for target, top in stubs:
            _remove_stub(rootfs, target, top)
        return 128 - code if code < 0 else code
    finally:
        if seccomp_fd >= 0:
            os.close(seccomp_fd)
        if mounted:
            unmount(rootfs)
        if netns is not None:
            _network.pool().release(netns)
        if not os.path.ismount(rootfs):
            with contextlib.suppress(OSError):
                shutil.rmtree(scratch)
