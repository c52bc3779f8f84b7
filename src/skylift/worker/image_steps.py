"""Each image build step, as the process runtime performs it on a layer directory.

A step gets a `StepContext`: the layer being built (a venv copied from the parent layer), the
accumulated metadata (env, workdir), and `run()` to execute a command with its output streamed
to the build log. A step that can't be done raises `StepError` with what failed and why.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import pip_config
from .blobs import BlobCache
from .mounts import host_path

BASE_STEPS = frozenset({"debian_slim", "from_registry", "from_dockerfile"})
TAIL_LINES = 20

# The image has no pip of its own (venvs are made --without-pip, in milliseconds); this `pip`
# runs the worker's pip against the image's interpreter, so `run_commands("pip install x")` and
# pip calls at run time install into the image.
PIP_SHIM = """#!/bin/sh
# pip for this environment: the worker's pip, run against this environment's python.
here="$(cd "$(dirname "$0")/.." && pwd)"
exec "{host_python}" -m pip --python "$here/bin/python" "$@"
"""


class StepError(Exception):
    pass


@dataclass
class StepContext:
    layer: dict[str, Any]
    dir: Path
    meta: dict[str, Any]
    blobs: BlobCache
    log: Callable[[str], None]
    pythons: dict[str, str]
    runtime_site: Path
    host_python: str
    first: bool

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.layer.get("args") or {})

    @property
    def python(self) -> Path:
        return self.dir / "bin" / "python"

    def site_packages(self) -> Path:
        found = sorted(self.dir.glob("lib/python*/site-packages"))
        if not found:
            raise StepError(f"the layer has no site-packages directory under {self.dir}/lib")
        return found[0]

    def cwd(self) -> Path:
        workdir = self.meta.get("workdir")
        path = host_path(self.dir / "fs", workdir) if workdir else self.dir
        path.mkdir(parents=True, exist_ok=True)
        return path

    def command_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The host's environment (proxies, certificates, HOME) with the image's venv first."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SKYLIFT_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(self.meta.get("env") or {})
        env.update(self.args.get("env") or {})
        env.update(extra or {})
        env["VIRTUAL_ENV"] = str(self.dir)
        env["PATH"] = f"{self.dir / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        return env

    async def run(self, argv: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                  shown: str | None = None) -> None:
        """Run a command, streaming its output to the log; StepError if it exits non-zero."""
        shown = shown or shlex.join(argv)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=str(cwd or self.dir), env=dict(env or self.command_env()),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        except OSError as exc:
            raise StepError(f"command `{shown}` could not start: {exc}") from None
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            tail.append(line)
            self.log(line)
        code = await proc.wait()
        if code != 0:
            output = "\n".join(tail) if tail else "(no output)"
            raise StepError(f"command `{shown}` exited with code {code}; its last output:\n{output}")


def find_pythons() -> dict[str, str]:
    """Python interpreters on this machine by series ("3.11" -> path): the worker's own first."""
    found = {"{}.{}".format(*sys.version_info[:2]): sys.executable}
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            match = re.fullmatch(r"python(3\.\d+)", name)
            if match and match.group(1) not in found:
                found[match.group(1)] = os.path.join(directory, name)
    return found


# -- bases ------------------------------------------------------------------------------------


async def debian_slim(ctx: StepContext, version: str | None = None) -> None:
    version = str(version or ctx.args.get("python_version") or "{}.{}".format(*sys.version_info[:2]))
    series = ".".join(version.split(".")[:2])
    interpreter = ctx.pythons.get(series)
    if interpreter is None:
        raise StepError(
            f"python_version={version!r} is not available on this worker: the process runtime builds "
            f"images from the worker's Python interpreters, which are {', '.join(sorted(ctx.pythons))}. "
            f"Use python_version=\"{sorted(ctx.pythons)[0]}\", or install python{series} on the worker")
    await ctx.run([interpreter, "-m", "venv", "--without-pip", "--prompt", "skylift", str(ctx.dir)], env=_clean_env())
    patch = await _python_version(ctx.python)
    if version.count(".") == 2 and patch != version:
        ctx.log(f"note: python_version={version!r} requested; this worker has {patch} (same series)")
    # Like Modal mounting its client into every container: the runtime and its two dependencies
    # come from the worker's own installation, through a .pth file.
    (ctx.site_packages() / "_skylift_runtime.pth").write_text(f"{ctx.runtime_site}\n")
    for name in ("pip", "pip3"):
        shim = ctx.dir / "bin" / name
        shim.write_text(PIP_SHIM.format(host_python=ctx.host_python))
        shim.chmod(0o755)
    ctx.meta["python_version"] = patch


async def _python_version(python: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(python), "-c", "import platform; print(platform.python_version())",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=_clean_env())
    out, _ = await proc.communicate()
    return out.decode().strip()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


async def from_registry(ctx: StepContext) -> None:
    tag = str(ctx.args.get("tag") or "")
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:(3\.\d+)(?:[.\-][\w.\-]*)?", tag)
    add_python = ctx.args.get("add_python")
    if match and not ctx.args.get("setup_dockerfile_commands"):
        ctx.log(f"the process runtime stands in for {tag} with a venv of the worker's Python {match.group(1)}")
        await debian_slim(ctx, match.group(1))
        return
    if add_python:
        ctx.log(f"the process runtime can't pull {tag}; using a venv of Python {add_python} instead")
        await debian_slim(ctx, str(add_python))
        return
    raise StepError(f"from_registry({tag!r}) needs the container runtime; the process runtime builds only "
                    "Python environments (from_registry(\"python:3.X-slim\") or add_python=\"3.X\" work)")


async def unsupported(ctx: StepContext) -> None:
    raise StepError(f"{ctx.layer['step']} is not supported by the process runtime; it needs the container runtime")


# -- packages ---------------------------------------------------------------------------------


def find_uv(host_python: str) -> list[str]:
    beside = Path(host_python).parent / "uv"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("uv")
    if found:
        return [found]
    return [host_python, "-m", "uv"]


async def _install(ctx: StepContext, packages: list[str], requirement_files: list[Path]) -> None:
    args = ctx.args
    settings = pip_config.read_settings(os.environ)
    env = ctx.command_env(pip_config.build_env(os.environ, settings))
    flags = pip_config.index_flags(settings, index_url=args.get("index_url"),
                                   extra_index_url=args.get("extra_index_url"), find_links=args.get("find_links"))
    extra = shlex.split(str(args.get("extra_options") or ""))
    reqs = [flag for path in requirement_files for flag in ("-r", str(path))]
    if not packages and not reqs:
        ctx.log("nothing to install")
        return
    uv = [*find_uv(ctx.host_python), "pip", "install", "--python", str(ctx.python), *flags,
          *pip_config.uv_trust_flags(settings), *(["--prerelease=allow"] if args.get("pre") else []),
          *extra, *packages, *reqs]
    try:
        await ctx.run(uv, env=env, cwd=ctx.cwd())
        return
    except StepError as exc:
        uv_error = exc
    ctx.log("uv failed; trying pip")
    pip = [ctx.host_python, "-m", "pip", "--python", str(ctx.python), "install", "--disable-pip-version-check",
           *flags, *pip_config.pip_trust_flags(settings), *(["--pre"] if args.get("pre") else []), *extra,
           *packages, *reqs]
    try:
        await ctx.run(pip, env=env, cwd=ctx.cwd())
    except StepError as pip_error:
        raise StepError(f"{uv_error}\n\nand with pip: {pip_error}") from None


async def _requirement_files(ctx: StepContext, scratch: Path, names: list[str]) -> list[Path]:
    files = ctx.layer.get("files") or []
    await ctx.blobs.materialize(files, scratch)
    return [scratch / name for name in names]


async def pip_install(ctx: StepContext) -> None:
    packages = list(ctx.args.get("packages") or [])
    names = list(ctx.args.get("requirements") or [])
    if isinstance(ctx.args.get("requirements"), str):
        names = [ctx.args["requirements"]]
    if ctx.args.get("uv_version"):
        ctx.log(f"note: uv_version={ctx.args['uv_version']!r} is ignored; the worker's uv is used")
    with tempfile.TemporaryDirectory(prefix="skylift-reqs-") as scratch:
        files = await _requirement_files(ctx, Path(scratch), names) if names else []
        await _install(ctx, packages, files)


# -- shell, env, files ------------------------------------------------------------------------


async def run_commands(ctx: StepContext) -> None:
    env = ctx.command_env()
    for command in ctx.args.get("commands") or []:
        ctx.log(f"$ {command}")
        await ctx.run(["/bin/sh", "-c", command], env=env, cwd=ctx.cwd(), shown=command)


async def set_env(ctx: StepContext) -> None:
    env = dict(ctx.meta.get("env") or {})
    env.update({str(k): str(v) for k, v in (ctx.args.get("vars") or {}).items()})
    ctx.meta["env"] = env


async def workdir(ctx: StepContext) -> None:
    path = str(ctx.args.get("path") or "/")
    if not path.startswith("/"):
        raise StepError(f"workdir {path!r} must be absolute")
    ctx.meta["workdir"] = path
    ctx.cwd()


async def add_local(ctx: StepContext) -> None:
    remote = str(ctx.args.get("remote_path") or "/root")
    dest = host_path(ctx.dir / "fs", remote)
    dest.mkdir(parents=True, exist_ok=True)
    await ctx.blobs.materialize(ctx.layer.get("files") or [], dest)
    if ctx.layer["step"] == "add_local_python_source":
        (ctx.site_packages() / f"_skylift_source_{remote.strip('/').replace('/', '_') or 'root'}.pth").write_text(
            f"{dest}\n")


async def apt_install(ctx: StepContext) -> None:
    packages = [str(p) for p in ctx.args.get("packages") or []]
    missing = []
    for package in packages:
        name = re.split(r"[=<>]", package, maxsplit=1)[0]
        proc = await asyncio.create_subprocess_exec(
            "dpkg-query", "-W", "-f=${Status}", name,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        if b"install ok installed" not in out:
            missing.append(name)
    if missing:
        raise StepError(
            f"apt_install: the process runtime can't install Debian packages into an image, and the worker "
            f"host lacks {', '.join(missing)}. Install them on the worker (apt-get install -y "
            f"{' '.join(missing)}) or run this image with the container runtime")
    ctx.log(f"apt packages already on the worker host: {', '.join(packages)}")


Step = Callable[[StepContext], Awaitable[None]]

STEPS: dict[str, Step] = {
    "debian_slim": debian_slim,
    "from_registry": from_registry,
    "from_dockerfile": unsupported,
    "run_function": unsupported,
    "pip_install": pip_install,
    "uv_pip_install": pip_install,
    "pip_install_from_requirements": pip_install,
    "pip_install_from_pyproject": pip_install,
    "run_commands": run_commands,
    "env": set_env,
    "workdir": workdir,
    "add_local_file": add_local,
    "add_local_dir": add_local,
    "add_local_python_source": add_local,
    "apt_install": apt_install,
}


async def run_step(ctx: StepContext) -> None:
    step = ctx.layer["step"]
    handler = STEPS.get(step)
    if handler is None:
        raise StepError(f"unknown build step {step!r}; this worker knows {', '.join(sorted(STEPS))}")
    if ctx.first and step not in BASE_STEPS:
        raise StepError(f"{step} can't be the first layer; an image starts with debian_slim() or from_registry()")
    if not ctx.first and step in BASE_STEPS:
        raise StepError(f"{step} must be the first layer of an image")
    for key in ("secret_ids", "volume_ids"):
        if ctx.args.get(key):
            ctx.log(f"warning: {key} of build steps are not passed to builds by this worker yet")
    await handler(ctx)
