"""The base steps that start from someone else's image: `from_registry` and `from_dockerfile`.

`from_registry(tag)` pulls the image (`oci_layers.pull`) and stacks its layers; its environment
and working directory come from the image's config. `setup_dockerfile_commands` and a Dockerfile's
instructions after FROM run through `DockerfileBuild`, each instruction that changes files as a layer
of its own under `<store>/steps/<id>/`, keyed like Docker's build cache by the chain of instructions
before it (so editing a Dockerfile's last RUN reruns only that RUN).

Supported: FROM (one; `AS name` allowed), RUN (shell and JSON form), COPY and ADD of files from the
build context (ADD extracts local tar archives), ENV, WORKDIR, ARG (with `build_args`). Ignored with a
note, as they describe how to *run* an image and skylift runs its own entrypoint: CMD, ENTRYPOINT,
EXPOSE, LABEL, MAINTAINER, STOPSIGNAL, HEALTHCHECK, VOLUME. Anything else (USER, SHELL, ONBUILD,
multi-stage builds, `COPY --from`, ADD of a URL) is a clear error.

`add_python="3.X"` installs a standalone CPython with uv (`uv python install`, downloaded from
python-build-standalone's GitHub releases) and links it as /usr/local/bin/python3 and python.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import hashlib
import posixpath
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .._hashing import canonical
from .container_layout import BUILD_DIR, DEFAULT_PATH
from .container_steps import LayerBuild, Step
from .dockerfile import DockerfileError, Instruction, assignments, expand, is_json_form, parse, split_flags, words
from .image_steps import StepError, find_uv
from .oci_layers import pull
from .registry import RegistryError

IGNORED = ("CMD", "ENTRYPOINT", "EXPOSE", "LABEL", "MAINTAINER", "STOPSIGNAL", "HEALTHCHECK", "VOLUME")
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
PYTHON_DIR = "/opt/skylift-python"


def _credentials(ctx: LayerBuild) -> tuple[str, str] | None:
    secret_id = ctx.args.get("registry_secret_id")
    if not secret_id:
        return None
    values: dict[str, str] | None = (ctx.services.get("secrets") or {}).get(secret_id)
    if values is None:
        ctx.log(f"warning: the registry secret {secret_id} was not sent with this build (deleted?); pulling with "
                "the worker's own registry credentials (docker login), if any")
        return None
    if "REGISTRY_USERNAME" not in values or "REGISTRY_PASSWORD" not in values:
        raise StepError(f"the registry secret {secret_id} must hold REGISTRY_USERNAME and REGISTRY_PASSWORD "
                        f"(it has {', '.join(sorted(values)) or 'nothing'})")
    return values["REGISTRY_USERNAME"], values["REGISTRY_PASSWORD"]


async def _pull_base(ctx: LayerBuild, tag: str) -> str:
    """Pull `tag` and make it the layers below; returns the image digest."""
    try:
        image = await asyncio.to_thread(pull, tag, ctx.store_root / "oci", _credentials(ctx), ctx.log)
    except (RegistryError, OSError) as exc:
        raise StepError(f"pulling {tag} failed: {exc}") from None
    ctx.lowers = list(image.layers)
    env = dict(image.env)
    env.setdefault("PATH", DEFAULT_PATH)
    ctx.meta.update(env=env, workdir=image.workdir, python=None, python_version="", python_is_venv=False)
    return image.digest


async def install_python(ctx: LayerBuild, series: str) -> None:
    uv_host = find_uv(sys.executable)
    if len(uv_host) != 1:
        raise StepError("add_python needs the uv executable beside the worker's Python")
    uv = f"{BUILD_DIR}/bin/uv"
    script = (f"set -e; {uv} python install --install-dir {PYTHON_DIR} {shlex.quote(series)}; "
              f"p=$(ls -d {PYTHON_DIR}/cpython-{series}*/bin/python{series} | head -n 1); "
              'mkdir -p /usr/local/bin; ln -sf "$p" /usr/local/bin/python3; ln -sf "$p" /usr/local/bin/python')
    try:
        await ctx.run(["/bin/sh", "-c", script], binds=[(Path(uv_host[0]), uv, True)],
                      env={"UV_PYTHON_INSTALL_DIR": PYTHON_DIR, "UV_NO_PROGRESS": "1"}, shown=f"add_python={series}")
    except StepError as exc:
        raise StepError(f"add_python={series!r}: installing a standalone Python (uv python install, downloaded "
                        f"from python-build-standalone on GitHub) failed: {exc}") from None


class DockerfileBuild:
    """Runs Dockerfile instructions on `ctx`: files-changing ones as cached layers under steps/."""

    def __init__(self, ctx: LayerBuild, chain: str, build_args: dict[str, str]) -> None:
        self.ctx = ctx
        self.chain = chain
        self.build_args = dict(build_args)
        self.arg_values: dict[str, str] = {}
        self.context: tuple[Path, str] | None = None

    def variables(self) -> dict[str, str]:
        return {**self.arg_values, **(self.ctx.meta.get("env") or {})}

    async def run(self, instructions: list[Instruction]) -> None:
        for ins in instructions:
            keyword = ins.keyword
            if keyword == "FROM":
                raise StepError(f"line {ins.line}: multi-stage builds (a second FROM) are not supported")
            if keyword in IGNORED:
                self.ctx.log(f"note: line {ins.line}: {keyword} is ignored (skylift runs its own entrypoint)")
            elif keyword == "ARG":
                for name, default in assignments(ins.text, ins.line, "ARG"):
                    value = self.build_args.get(name, expand(default, self.variables()))
                    self.arg_values[name] = value
            elif keyword == "ENV":
                env = dict(self.ctx.meta.get("env") or {})
                for name, value in assignments(ins.text, ins.line, "ENV"):
                    env[name] = expand(value, self.variables())
                self.ctx.meta["env"] = env
            elif keyword == "WORKDIR":
                path = expand(ins.text.strip(), self.variables())
                path = posixpath.normpath(posixpath.join(self.ctx.cwd, path))
                await self._layer(f"WORKDIR {path}", ["mkdir", "-p", path], network=False)
                self.ctx.meta["workdir"] = path
            elif keyword == "RUN":
                argv = words(ins.text, ins.line) if is_json_form(ins.text) else ["/bin/sh", "-c", ins.text]
                self.ctx.log(f"RUN {ins.text}")
                await self._layer(f"RUN {ins.text}", argv, env=self._run_env(), shown=str(ins))
            elif keyword in ("COPY", "ADD"):
                await self._copy(ins)
            else:
                raise StepError(f"line {ins.line}: the Dockerfile instruction {keyword} is not supported (skylift "
                                "supports FROM, RUN, COPY, ADD, ENV, WORKDIR and ARG)")

    def _run_env(self) -> dict[str, str]:
        env = self.ctx.meta.get("env") or {}
        return {k: v for k, v in self.arg_values.items() if k not in env}

    async def _layer(self, key: str, argv: list[str], *, env: dict[str, str] | None = None, network: bool = True,
                     binds: list[tuple[Path, str, bool]] | None = None, shown: str | None = None,
                     files: list[Any] | None = None) -> None:
        ctx = self.ctx
        state = {"env": ctx.meta.get("env"), "args": self.arg_values, "workdir": ctx.cwd, "files": files or []}
        layer_id = hashlib.sha256(self.chain.encode() + canonical([key, state])).hexdigest()
        self.chain = layer_id
        steps = ctx.store_root / "steps"
        final = steps / layer_id
        if not final.is_dir():
            steps.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=steps, prefix=f".tmp-{layer_id[:16]}-"))
            try:
                await dataclasses.replace(ctx, fs=tmp).run(argv, env=env, network=network, binds=binds or [],
                                                          shown=shown)
                tmp.chmod(0o755)
                tmp.rename(final)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
                raise
        else:
            ctx.log(f"(cached) {shown or key}")
        if any(final.iterdir()):
            ctx.lowers = [*ctx.lowers, final]

    async def _copy(self, ins: Instruction) -> None:
        ctx = self.ctx
        flags, parts = split_flags(words(expand(ins.text, self.variables()), ins.line))
        if "from" in flags:
            raise StepError(f"line {ins.line}: {ins.keyword} --from (multi-stage builds) is not supported")
        if len(parts) < 2:
            raise StepError(f"line {ins.line}: {ins.keyword} needs a source and a destination")
        sources, dest = parts[:-1], parts[-1]
        if self.context is None:
            self.context = await ctx.lend(list(ctx.layer.get("files") or []), "context")
        host, inside = self.context
        dest = posixpath.normpath(posixpath.join(ctx.cwd, dest)) + ("/" if dest.endswith("/") else "")
        matched: list[str] = []
        commands = []
        for source in sources:
            if "://" in source:
                raise StepError(f"line {ins.line}: ADD of a URL ({source}) is not supported; download it in a RUN")
            found = sorted(glob.glob(source.lstrip("/") or ".", root_dir=host))
            if not found:
                raise StepError(f"line {ins.line}: {ins.keyword} {source}: no such file in the build context "
                                f"(it holds {len(ctx.layer.get('files') or [])} file(s) the SDK sent)")
            matched += found
        into_dir = dest.endswith("/") or len(matched) > 1
        for rel in matched:
            src = shlex.quote(f"{inside}/{rel}")
            target = shlex.quote(dest.rstrip("/") or "/")
            if (host / rel).is_dir():
                commands.append(f"mkdir -p {target} && cp -a {src}/. {target}/")
            elif ins.keyword == "ADD" and rel.endswith(ARCHIVES):
                commands.append(f"mkdir -p {target} && tar -xf {src} -C {target}")
            elif into_dir:
                commands.append(f"mkdir -p {target} && cp -a {src} {target}/")
            else:
                commands.append(f'mkdir -p "$(dirname {target})" && cp -a {src} {target}')
        files = [f for f in ctx.layer.get("files") or []
                 if any(m in (".", f["path"]) or f["path"].startswith(m.rstrip("/") + "/") for m in matched)]
        await self._layer(str(ins), ["/bin/sh", "-c", " && ".join(commands)], network=False,
                          binds=[(host, inside, True)], shown=str(ins),
                          files=sorted([f["path"], f["sha256"], f.get("mode")] for f in files))


async def from_registry(ctx: LayerBuild) -> None:
    tag = str(ctx.args.get("tag") or "")
    digest = await _pull_base(ctx, tag)
    if ctx.args.get("add_python"):
        await install_python(ctx, str(ctx.args["add_python"]))
    commands = [str(c) for c in ctx.args.get("setup_dockerfile_commands") or []]
    if commands:
        try:
            await DockerfileBuild(ctx, digest, {}).run(parse("\n".join(commands)))
        except DockerfileError as exc:
            raise StepError(f"setup_dockerfile_commands: {exc}") from None
    await ctx.probe_python()


async def from_dockerfile(ctx: LayerBuild) -> None:
    args = ctx.args
    build_args = {str(k): str(v) for k, v in (args.get("build_args") or {}).items()}
    try:
        instructions = parse(str(args.get("dockerfile") or ""))
    except DockerfileError as exc:
        raise StepError(f"the Dockerfile: {exc}") from None
    global_args: dict[str, str] = {}
    while instructions and instructions[0].keyword == "ARG":
        for name, default in assignments(instructions[0].text, instructions[0].line, "ARG"):
            global_args[name] = build_args.get(name, expand(default, global_args))
        instructions = instructions[1:]
    if not instructions or instructions[0].keyword != "FROM":
        raise StepError("the Dockerfile must start with FROM (after any ARG lines)")
    base = words(expand(instructions[0].text, global_args), instructions[0].line)
    base = [w for w in base if not w.startswith("--platform")]
    if not base or base[0] == "scratch":
        raise StepError("FROM scratch is not supported: the image needs a shell (and Python) to run functions")
    ctx.log(f"FROM {base[0]}")
    digest = await _pull_base(ctx, base[0])
    if args.get("add_python"):
        await install_python(ctx, str(args["add_python"]))
    try:
        await DockerfileBuild(ctx, digest, build_args).run(instructions[1:])
    except DockerfileError as exc:
        raise StepError(f"the Dockerfile: {exc}") from None
    await ctx.probe_python()


STEPS: dict[str, Step] = {"from_registry": from_registry, "from_dockerfile": from_dockerfile}
