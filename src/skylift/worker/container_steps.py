"""Each image build step, as the container runtime performs it: inside the image, into a new layer.

A step gets a `LayerBuild`: the layers below (lowest first), the new layer's directory (`fs`, an
overlayfs upper directory), and the accumulated metadata (env, workdir, the image's Python). Every
command runs with `container.run_build_step` on overlay(lowers) + fs, so what it changes — files,
and whiteouts for what it deletes — *is* the new layer. Files from the user (add_local_*, requirement
files, the pickled function of run_function) are lent to the step through read-only binds under
`/run/skylift-build`, never written into the layer directly: paths resolve inside the image, so a
`/lib -> usr/lib` symlink below is followed, not shadowed.

The image's Python: `debian_slim()` is Debian's python3 in a venv at /opt/skylift-venv (pip
included), so installs never touch the distribution's packages (PEP 668). Other bases (registry
images, Dockerfiles) use the `python3`/`python` their PATH finds; installs into a Python that is not
a venv pass `--break-system-packages`, as `docker build` users do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pip_config
from .blobs import BlobCache
from .container import ContainerError, build_debian_base, run_build_step
from .container.debian import python_series
from .container_layout import BUILD_DIR, DEFAULT_PATH, RUNTIME_DIR, VENV, VENV_PYTHON, Bind, runtime_binds
from .image_steps import BASE_STEPS, StepError, find_uv

TAIL_LINES = 20
Log = Callable[[str], None]

# Probes the image's Python: its path, version, and whether it is a venv.
PYTHON_PROBE = (
    'for p in python3 python; do x="$(command -v "$p")" || continue; '
    '"$x" -c \'import sys; print("SKYLIFT-PYTHON", sys.executable, "%d.%d.%d" % sys.version_info[:3], '
    'int(sys.prefix != sys.base_prefix))\' && exit 0; done; exit 3'
)

RUN_FUNCTION = """\
import asyncio, inspect, sys
import cloudpickle
try:  # the build function's `import modal` imports skylift, as in the function's own containers
    from skylift._modal_alias import install
    install()
except ImportError:
    pass
with open(sys.argv[1], "rb") as f:
    fn, args, kwargs = cloudpickle.load(f)
result = fn(*args, **kwargs)
if inspect.isawaitable(result):
    async def _wait():
        return await result
    asyncio.run(_wait())
"""


@dataclass
class LayerBuild:
    """One layer being built: what is below it, where its changes go, what the image is so far."""

    layer: dict[str, Any]
    fs: Path
    lowers: list[Path]
    meta: dict[str, Any]
    blobs: BlobCache
    log: Log
    scratch: Path
    cache_dir: Path
    base_cache: Path
    first: bool
    store_root: Path  # the image store's directory: pulled layers (oci/), Dockerfile step layers (steps/)
    services: dict[str, Any] = field(default_factory=dict)  # "secrets": {secret id: {KEY: value}} of this build

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.layer.get("args") or {})

    @property
    def cwd(self) -> str:
        return str(self.meta.get("workdir") or "/")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "HOME": "/root"}
        env.update(self.meta.get("env") or {})
        secrets = self.services.get("secrets") or {}
        for secret_id in self.args.get("secret_ids") or []:
            env.update(secrets.get(secret_id) or {})
        env.update({str(k): str(v) for k, v in (self.args.get("env") or {}).items()})
        env.update(extra or {})
        return env

    def python(self) -> str:
        python = self.meta.get("python")
        if not python:
            raise StepError("the image has no Python (no python3 or python on its PATH); start from an image "
                            "with Python, or use Image.debian_slim()")
        return str(python)

    async def run(self, argv: list[str], *, env: dict[str, str] | None = None, network: bool = True,
                  binds: Sequence[Bind] = (), shown: str | None = None, cwd: str | None = None) -> list[str]:
        """Run a command in the image being built; StepError (with its output) if it fails."""
        shown = shown or shlex.join(argv)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

        def line(text: str) -> None:
            tail.append(text)
            self.log(text)

        try:
            code = await asyncio.to_thread(run_build_step, self.lowers, self.fs, argv, self.env(env), cwd or self.cwd,
                                           line, network, binds)
        except (ContainerError, OSError, RuntimeError) as exc:
            raise StepError(f"command `{shown}` could not run: {exc}") from None
        if code != 0:
            output = "\n".join(tail) if tail else "(no output)"
            raise StepError(f"command `{shown}` exited with code {code}; its last output:\n{output}")
        return list(tail)

    async def lend(self, files: list[dict[str, Any]], name: str) -> tuple[Path, str]:
        """Materialise the layer's `files` in a scratch dir; (host dir, where a step sees it)."""
        directory = self.scratch / name
        directory.mkdir(parents=True, exist_ok=True)
        await self.blobs.materialize(files, directory)
        directory.chmod(0o755)
        return directory, f"{BUILD_DIR}/{name}"

    async def probe_python(self) -> None:
        """Record the Python the image's PATH finds (none: later steps that need one say so)."""
        probe_dir = self.scratch / "probe"
        lines: list[str] = []
        code = await asyncio.to_thread(
            run_build_step, [*self.lowers, self.fs], probe_dir, ["/bin/sh", "-c", PYTHON_PROBE], self.env(),
            "/", lines.append, False)
        shutil.rmtree(probe_dir, ignore_errors=True)
        found = next((ln.split() for ln in lines if ln.startswith("SKYLIFT-PYTHON ")), None)
        if code != 0 or found is None or len(found) < 4:
            self.meta.update(python=None, python_version="", python_is_venv=False)
            self.log("note: this image has no Python on its PATH; functions can't run in it until one is added")
            return
        self.meta.update(python=found[1], python_version=found[2], python_is_venv=found[3] == "1")
        self.log(f"the image's Python: {found[1]} ({found[2]})")


# -- the Debian base ------------------------------------------------------------------------------


def ensure_venv_layer(base: Path, log: Log) -> Path:
    """The layer holding /opt/skylift-venv on top of `base`, built once beside it (like the base)."""
    final = base.parent / f"{base.name}.venv"
    if (final / VENV.lstrip("/") / "pyvenv.cfg").exists():
        return final
    with open(base.parent / f".{base.name}.venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / VENV.lstrip("/") / "pyvenv.cfg").exists():
            return final
        partial = Path(tempfile.mkdtemp(dir=base.parent, prefix=f".{base.name}.venv-"))
        try:
            tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
            code = run_build_step([base], partial, ["python3", "-m", "venv", VENV], {}, "/", tail.append, False)
            if code != 0:
                raise StepError(f"creating {VENV} failed (exit {code}):\n" + "\n".join(tail))
            partial.chmod(0o755)
            if final.exists():
                shutil.rmtree(final)
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        log(f"created the image's Python environment {VENV}")
        return final


def _venv_version(venv_layer: Path) -> str:
    with contextlib.suppress(OSError):
        for line in (venv_layer / VENV.lstrip("/") / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    return ""


async def debian_slim(ctx: LayerBuild) -> None:
    version = ctx.args.get("python_version")
    try:
        python_series(version)
        base = await asyncio.to_thread(build_debian_base, ctx.base_cache, version, ctx.log)
    except ContainerError as exc:
        raise StepError(str(exc)) from None
    venv = await asyncio.to_thread(ensure_venv_layer, base, ctx.log)
    ctx.lowers = [base, venv]
    patch = _venv_version(venv)
    if version and str(version).count(".") == 2 and patch and patch != version:
        ctx.log(f"note: python_version={version!r} requested; Debian's is {patch} (same series)")
    ctx.meta.update(python=VENV_PYTHON, python_version=patch, python_is_venv=True,
                    env={"PATH": f"{VENV}/bin:{DEFAULT_PATH}", "VIRTUAL_ENV": VENV})


# -- packages -------------------------------------------------------------------------------------


async def apt_install(ctx: LayerBuild) -> None:
    packages = " ".join(shlex.quote(str(p)) for p in ctx.args.get("packages") or [])
    # Dpkg::Use-Pty=0: without a pty dpkg prints its "(Reading database ... 5%" progress once, not per percent.
    script = (f"apt-get update -q && apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends {packages} "
              "&& apt-get clean && rm -rf /var/lib/apt/lists/*")
    await ctx.run(["/bin/sh", "-c", script], env={"DEBIAN_FRONTEND": "noninteractive"},
                  shown=f"apt-get install {packages}")


def _requirement_names(args: dict[str, Any]) -> list[str]:
    value = args.get("requirements")
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value or []]


async def pip_install(ctx: LayerBuild) -> None:
    args = ctx.args
    packages = [str(p) for p in args.get("packages") or []]
    names = _requirement_names(args)
    if not packages and not names:
        ctx.log("nothing to install")
        return
    python = ctx.python()
    binds: list[Bind] = []
    reqs: list[str] = []
    if names:
        host_dir, inside = await ctx.lend(list(ctx.layer.get("files") or []), "requirements")
        binds.append((host_dir, inside, True))
        reqs = [flag for name in names for flag in ("-r", f"{inside}/{name}")]
    if args.get("uv_version"):
        ctx.log(f"note: uv_version={args['uv_version']!r} is ignored; the worker's uv is used")
    settings = pip_config.read_settings(os.environ)
    flags = pip_config.index_flags(settings, index_url=args.get("index_url"),
                                   extra_index_url=args.get("extra_index_url"), find_links=args.get("find_links"))
    extra = shlex.split(str(args.get("extra_options") or ""))
    system = [] if ctx.meta.get("python_is_venv") else ["--break-system-packages"]
    uv_host = find_uv(sys.executable)
    cache = ctx.cache_dir / "uv"
    cache.mkdir(parents=True, exist_ok=True)
    uv_error: StepError | None = None
    if len(uv_host) == 1 and os.path.exists(uv_host[0]):
        uv = f"{BUILD_DIR}/bin/uv"
        argv = [uv, "pip", "install", "--python", python, *(["--system"] if system else []), *system, *flags,
                *pip_config.uv_trust_flags(settings), *(["--prerelease=allow"] if args.get("pre") else []),
                *extra, *packages, *reqs]
        try:
            await ctx.run(argv, binds=[*binds, (Path(uv_host[0]), uv, True), (cache, f"{BUILD_DIR}/cache/uv", False)],
                          env={"UV_CACHE_DIR": f"{BUILD_DIR}/cache/uv", "UV_LINK_MODE": "copy",
                               "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"})
            return
        except StepError as exc:
            uv_error = exc
            ctx.log("uv failed; trying pip")
    argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir", *flags,
            *pip_config.pip_trust_flags(settings), *(["--pre"] if args.get("pre") else []), *extra, *packages, *reqs]
    try:
        await ctx.run(argv, binds=binds, env={"PIP_BREAK_SYSTEM_PACKAGES": "1"} if system else None)
    except StepError as pip_error:
        raise StepError(f"{uv_error}\n\nand with pip: {pip_error}" if uv_error else str(pip_error)) from None


# -- shell, env, files ----------------------------------------------------------------------------


async def run_commands(ctx: LayerBuild) -> None:
    for command in ctx.args.get("commands") or []:
        ctx.log(f"$ {command}")
        await ctx.run(["/bin/sh", "-c", str(command)], shown=str(command))


async def set_env(ctx: LayerBuild) -> None:
    env = dict(ctx.meta.get("env") or {})
    env.update({str(k): str(v) for k, v in (ctx.args.get("vars") or {}).items()})
    ctx.meta["env"] = env


async def workdir(ctx: LayerBuild) -> None:
    path = str(ctx.args.get("path") or "/")
    if not path.startswith("/"):
        raise StepError(f"workdir {path!r} must be absolute")
    await ctx.run(["mkdir", "-p", path], network=False, cwd="/")
    ctx.meta["workdir"] = path


async def add_local(ctx: LayerBuild) -> None:
    remote = str(ctx.args.get("remote_path") or "/root")
    if not remote.startswith("/"):
        raise StepError(f"remote_path {remote!r} must be absolute")
    host_dir, inside = await ctx.lend(list(ctx.layer.get("files") or []), "files")
    target = shlex.quote(remote)
    count = len(ctx.layer.get("files") or [])
    await ctx.run(["/bin/sh", "-c", f"mkdir -p {target} && cp -a {inside}/. {target}/"], network=False,
                  binds=[(host_dir, inside, True)], shown=f"copy {count} file(s) to {remote}", cwd="/")


async def run_function(ctx: LayerBuild) -> None:
    python = ctx.python()
    host_dir, inside = await ctx.lend(list(ctx.layer.get("files") or []), "function")
    name = ctx.args.get("function_name") or "the function"
    ctx.log(f"running {name}")
    env = {"PYTHONPATH": ":".join(p for p in (RUNTIME_DIR, (ctx.meta.get("env") or {}).get("PYTHONPATH")) if p),
           "MODAL_IS_REMOTE": "1", "PYTHONUNBUFFERED": "1"}
    await ctx.run([python, "-c", RUN_FUNCTION, f"{inside}/function.pkl"], env=env,
                  binds=[(host_dir, inside, True), *runtime_binds()], shown=f"run_function({name})")


Step = Callable[[LayerBuild], Awaitable[None]]

STEPS: dict[str, Step] = {
    "debian_slim": debian_slim,
    "pip_install": pip_install,
    "uv_pip_install": pip_install,
    "pip_install_from_requirements": pip_install,
    "pip_install_from_pyproject": pip_install,
    "run_commands": run_commands,
    "run_function": run_function,
    "env": set_env,
    "workdir": workdir,
    "add_local_file": add_local,
    "add_local_dir": add_local,
    "add_local_python_source": add_local,
    "apt_install": apt_install,
}


async def run_step(ctx: LayerBuild) -> None:
    from .registry_steps import STEPS as REGISTRY_STEPS

    step = ctx.layer["step"]
    handler = STEPS.get(step) or REGISTRY_STEPS.get(step)
    if handler is None:
        known = ", ".join(sorted({*STEPS, *REGISTRY_STEPS}))
        raise StepError(f"unknown build step {step!r}; this worker knows {known}")
    if ctx.first and step not in BASE_STEPS:
        raise StepError(f"{step} can't be the first layer; an image starts with debian_slim() or from_registry()")
    if not ctx.first and step in BASE_STEPS:
        raise StepError(f"{step} must be the first layer of an image")
    missing = [s for s in ctx.args.get("secret_ids") or [] if s not in (ctx.services.get("secrets") or {})]
    if missing:
        ctx.log(f"warning: secret(s) {', '.join(missing)} were not sent with this build (deleted?); their "
                "variables are not set")
    if ctx.args.get("volume_ids"):
        ctx.log("warning: volumes of build steps are not mounted in builds by this worker yet")
    await handler(ctx)
