"""Container images, defined in Python as a chain of build steps (`modal.Image`).

    image = (
        modal.Image.debian_slim(python_version="3.12")
        .apt_install("git")
        .uv_pip_install("torch==2.7.1", "numpy")
        .add_local_python_source("mylib")
    )

An `Image` is an immutable recipe: every method returns a new Image with one more layer. Nothing is
built here; a worker builds the layers later from `image._definition()`, the wire form:

    {"layers": [{"step": str, "args": {...}, "files": [{"path", "sha256", "mode"}], "force_build": bool}]}

Local files a step needs (requirements files, a Dockerfile's context, `add_local_*` contents) are
hashed when the step is defined; `image._local_files()` maps each hash to a local path so the
uploader can send the bytes later. Inside a container the same program is imported again, but its
local files are not there: the hashing is then deferred until someone asks for the definition.
`add_local_*(copy=False)` layers are not built at all: they become mounts attached when a container
starts (`_start_mounts()`), so no build step may follow them.

The Python-package steps live in `_images/packages.py` (a base class of `Image`), the checks of what
steps are given and the `Layer` in `_images/args.py`.
"""

from __future__ import annotations

import contextlib
import posixpath
import warnings
from collections.abc import Callable, Iterator, Sequence
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any

from . import _hashing
from ._images import args as _args
from ._images import files as _image_files
from ._images.args import SUPPORTED_PYTHON_SERIES, Layer, Resolved
from ._images.files import AUTO_DOCKERIGNORE, NON_PYTHON_FILES, FileList, Ignore
from ._images.packages import PythonPackages
from ._resources import parse_cpu, parse_gpu, parse_memory, validate_timeout
from .exception import DeprecationError, InvalidError


class Image(PythonPackages):
    """A container image: a base plus build steps, each one cached layer.

    Create one with a constructor such as `Image.debian_slim()` or `Image.from_registry(...)`,
    then chain steps. Each method returns a new Image; the original is unchanged.

    Example:
        >>> image = Image.debian_slim(python_version="3.12").pip_install("numpy")
        >>> [layer["step"] for layer in image._definition()["layers"]]
        ['debian_slim', 'pip_install']
    """

    _layers: tuple[Layer, ...]
    _python_version: str | None
    _inside_exceptions: list[BaseException]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidError("Image can't be constructed directly; start from a constructor such as "
                           "modal.Image.debian_slim() or modal.Image.from_registry(\"python:3.12-slim\").")

    @classmethod
    def _new(cls, layers: tuple[Layer, ...], python_version: str | None,
             inside_exceptions: list[BaseException] | None = None) -> Image:
        image = object.__new__(cls)
        image._layers = layers
        image._python_version = python_version
        # Shared down the chain, like Modal: an `imports()` failure recorded on a base image
        # belongs to every image built on it.
        image._inside_exceptions = inside_exceptions if inside_exceptions is not None else []
        return image

    def _extend(self, step: str, make: Callable[[], Resolved], *, force_build: bool = False,
                refs: dict[str, Any] | None = None, copy: bool = True) -> Image:
        if copy and self._layers and not self._layers[-1].copy:
            raise InvalidError(
                f"An image tried to run a build step ({step}) after `image.add_local_*` added local files "
                "with copy=False, which are attached when a container starts, not built into the image.\n"
                "Move the add_local_* calls to the end of the chain (so file changes don't rebuild the "
                "image), or pass copy=True to bake the files into a layer, e.g.\n"
                "    Image.debian_slim().add_local_file(\"data.json\", \"/root/data.json\", copy=True)"
                ".run_commands(\"python -m mypkg\")")
        # force_build rebuilds this layer and every layer after it, as in Modal.
        inherited = self.force_build or force_build
        layer = Layer(step, make, force_build=inherited, refs=refs, copy=copy)
        return Image._new((*self._layers, layer), self._python_version, self._inside_exceptions)

    # ---------------------------------------------------------------------------------------
    # Wire form, read by the runner (uploads, image.build) and the function-definition builder.

    def _layer_dict(self, layer: Layer, resolve_id: Callable[[Any], str] | None) -> dict[str, Any]:
        args, files = layer.resolve()
        args = deepcopy(args)  # callers may edit what they get; the layer stays as defined
        if resolve_id is not None:
            for key, value in layer.refs.items():
                if isinstance(value, dict):
                    args[key] = {path: resolve_id(obj) for path, obj in value.items()}
                elif isinstance(value, list):
                    args[key] = [resolve_id(obj) for obj in value]
                else:
                    args[key] = resolve_id(value)
        return {"step": layer.step, "args": args, "files": [dict(f) for f in files.entries],
                "force_build": layer.force_build or _args.env_force_build()}

    def _definition(self, resolve_id: Callable[[Any], str] | None = None) -> dict[str, Any]:
        """Every layer, base first, including trailing add_local_*(copy=False) ones.

        `resolve_id(obj)` turns a referenced Secret or Volume into its id; with it, layers that
        use them get `secret_ids`, `volume_ids` or `registry_secret_id` in their args.
        """
        return {"layers": [self._layer_dict(layer, resolve_id) for layer in self._layers]}

    def _build_layers(self, resolve_id: Callable[[Any], str] | None = None) -> list[dict[str, Any]]:
        """The layers a worker builds: all but the trailing add_local_*(copy=False) ones."""
        return [self._layer_dict(layer, resolve_id) for layer in self._layers if layer.copy]

    def _start_mounts(self) -> list[dict[str, Any]]:
        """The add_local_*(copy=False) layers as Mounts: `[{"remote_path", "files"}]`."""
        mounts = []
        for layer in self._layers:
            if not layer.copy:
                args, files = layer.resolve()
                mounts.append({"remote_path": args["remote_path"], "files": [dict(f) for f in files.entries]})
        return mounts

    def _local_files(self) -> dict[str, Path]:
        """sha256 → a local file holding those bytes, for every file any layer references."""
        local: dict[str, Path] = {}
        for layer in self._layers:
            local.update(layer.resolve()[1].local)
        return local

    def _objects(self) -> list[Any]:
        """Secrets and Volumes the build steps use; they must exist before the image is built."""
        found: list[Any] = []
        for layer in self._layers:
            for value in layer.refs.values():
                items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
                for obj in items:
                    if not any(obj is seen for seen in found):
                        found.append(obj)
        return found

    def _layer_ids(self) -> list[str]:
        """The content ids of the built layers, base first (see `skylift._hashing`)."""
        return _hashing.layer_chain_ids({"layers": self._build_layers()})

    @property
    def python_version(self) -> str | None:
        """The Python version the image provides, when the base says so (debian_slim, add_python)."""
        return self._python_version

    @property
    def force_build(self) -> bool:
        return bool(self._layers) and self._layers[-1].force_build

    def __repr__(self) -> str:
        steps = " -> ".join(layer.step for layer in self._layers)
        return f"Image({steps})"

    # ---------------------------------------------------------------------------------------
    # Bases

    @staticmethod
    def debian_slim(python_version: str | None = None, force_build: bool = False) -> Image:
        """A Debian slim image with Python, the default base.

        Args:
            python_version: "3.X" (or "3.X.Y"); defaults to the local major.minor version.
            force_build: Rebuild this layer and everything after it, ignoring the cache.

        Example:
            >>> Image.debian_slim(python_version="3.11").python_version
            '3.11'
        """
        version = _args.validate_python_version(python_version, what="Image.debian_slim()")
        base = Image._new((), version)
        return base._extend("debian_slim", lambda: ({"python_version": version}, FileList()),
                            force_build=force_build)

    @staticmethod
    def from_registry(
        tag: str,
        secret: Any | None = None,
        *,
        setup_dockerfile_commands: list[str] = [],  # noqa: B006 - Modal's signature; never mutated
        force_build: bool = False,
        add_python: str | None = None,
    ) -> Image:
        """An image pulled from a container registry, such as Docker Hub.

        The image must have `python` and `pip` on PATH unless `add_python` installs a standalone
        Python. A private registry takes a Secret with REGISTRY_USERNAME and REGISTRY_PASSWORD.

        Args:
            tag: The image reference, e.g. "python:3.12-slim" or "nvcr.io/nvidia/pytorch:24.01-py3".
            secret: Registry credentials.
            setup_dockerfile_commands: Dockerfile lines run right after FROM.
            force_build: Rebuild this layer and everything after it.
            add_python: A Python series ("3.X") to add to an image that lacks one.

        Example:
            >>> Image.from_registry("ubuntu:22.04", add_python="3.11").python_version
            '3.11'
        """
        if not isinstance(tag, str) or not tag.strip() or any(c.isspace() for c in tag.strip()):
            raise InvalidError(f"Image.from_registry({tag!r}): pass an image reference like \"python:3.12-slim\".")
        if add_python is not None:
            _args.validate_python_version(add_python, what="Image.from_registry(add_python=...)", allow_micro=False)
        commands = _args.flatten("Image.from_registry(setup_dockerfile_commands=...)", setup_dockerfile_commands)
        args = {"tag": tag.strip(), "setup_dockerfile_commands": commands, "add_python": add_python}
        refs = {"registry_secret_id": secret} if secret is not None else None
        return Image._new((), add_python)._extend("from_registry", lambda: (args, FileList()),
                                                  force_build=force_build, refs=refs)

    @staticmethod
    def from_dockerfile(
        path: str | Path,
        *,
        force_build: bool = False,
        context_dir: str | Path | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        gpu: str | None = None,
        add_python: str | None = None,
        build_args: dict[str, str] = {},  # noqa: B006 - Modal's signature; never mutated
        ignore: Ignore = AUTO_DOCKERIGNORE,
    ) -> Image:
        """An image built from a local Dockerfile (on a worker, later).

        The Dockerfile is read now; the context files its COPY/ADD lines name (relative to
        `context_dir`, the current directory by default, minus `.dockerignore`) are hashed now.

        Args:
            path: The Dockerfile.
            force_build: Rebuild this layer and everything after it.
            context_dir: The build context; defaults to the current directory.
            env: Environment variables for the build.
            secrets: Secrets whose keys are set in the build's environment.
            gpu: A GPU to build on, e.g. "T4".
            add_python: A Python series ("3.X") to add when the Dockerfile has none.
            build_args: Values for the Dockerfile's ARGs.
            ignore: Context files to leave out: patterns, a callable, or AUTO_DOCKERIGNORE.
        """
        what = "Image.from_dockerfile()"
        if add_python is not None:
            _args.validate_python_version(add_python, what=f"{what} add_python", allow_micro=False)
        if not isinstance(build_args, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in build_args.items()):
            raise InvalidError(f"{what}: build_args must be a dict of str to str.")
        build_env = _args.build_env(what, env)
        gpu_wire = parse_gpu(gpu)
        refs = _args.step_refs(_args.secret_list(what, secrets))
        dockerfile = Path(path).expanduser()
        base_dir = Path.cwd() if context_dir is None else Path(context_dir).expanduser()

        def make() -> Resolved:
            try:
                text = dockerfile.read_text("utf-8")
            except OSError as exc:
                raise InvalidError(f"{what}: can't read the Dockerfile {str(dockerfile)!r}: {exc.strerror}.") from exc
            files = _image_files.dockerfile_context(text, base_dir.absolute(), dockerfile.absolute(), ignore)
            args = {"dockerfile": text, "build_args": dict(build_args), "add_python": add_python,
                    "env": build_env, "gpu": gpu_wire}
            return args, files

        return Image._new((), add_python)._extend("from_dockerfile", make, force_build=force_build, refs=refs)

    @staticmethod
    def micromamba(python_version: str | None = None, force_build: bool = False) -> Image:
        """Not supported yet; use `Image.debian_slim(python_version=...)` with `pip_install`."""
        raise InvalidError("Image.micromamba() is not supported yet; use "
                           "Image.debian_slim(python_version=...).uv_pip_install(...) instead.")

    @staticmethod
    def from_id(image_id: str, client: Any = None) -> Image:
        """Not supported yet; keep the Image definition in code and reuse it."""
        raise InvalidError(f"Image.from_id({image_id!r}) is not supported yet; define the image in code "
                           "(e.g. Image.debian_slim().pip_install(...)) and reuse that object.")

    # ---------------------------------------------------------------------------------------
    # System and shell

    def apt_install(
        self,
        *packages: str | list[str],
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install Debian packages with apt.

        Example:
            >>> Image.debian_slim(python_version="3.12").apt_install("git", "curl")._definition()[
            ...     "layers"][-1]["args"]["packages"]
            ['git', 'curl']
        """
        pkgs = _args.flatten("Image.apt_install()", packages)
        if not pkgs:
            return self
        args = {"packages": pkgs, **_args.step_args("apt_install", env, gpu)}
        return self._extend("apt_install", lambda: (args, FileList()), force_build=force_build,
                            refs=_args.step_refs(_args.secret_list("Image.apt_install()", secrets)))

    def run_commands(
        self,
        *commands: str | list[str],
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        volumes: dict[str | PurePosixPath, Any] | None = None,
        gpu: str | None = None,
        force_build: bool = False,
    ) -> Image:
        """Run shell commands, each as its own `RUN` line, in one layer.

        Example:
            >>> Image.debian_slim(python_version="3.12").run_commands("echo hi > /hi")._definition()[
            ...     "layers"][-1]["args"]["commands"]
            ['echo hi > /hi']
        """
        what = "Image.run_commands()"
        cmds = _args.flatten(what, commands)
        if not cmds:
            return self
        args = {"commands": cmds, **_args.step_args("run_commands", env, gpu)}
        return self._extend("run_commands", lambda: (args, FileList()), force_build=force_build,
                            refs=_args.step_refs(_args.secret_list(what, secrets), _args.volume_map(what, volumes)))

    def run_function(
        self,
        raw_f: Callable[..., Any],
        *,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        volumes: dict[str | PurePosixPath, Any] = {},  # noqa: B006 - Modal's signature; never mutated
        network_file_systems: dict[str | PurePosixPath, Any] = {},  # noqa: B006 - Modal's signature; never mutated
        gpu: str | list[str] | None = None,
        cpu: float | None = None,
        memory: int | None = None,
        timeout: int = 60 * 60,
        cloud: str | None = None,
        region: str | Sequence[str] | None = None,
        force_build: bool = False,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] = {},  # noqa: B006 - Modal's signature; never mutated
        include_source: bool = True,
    ) -> Image:
        """Run a Python function as a build step; the files it writes become a layer.

        The function (and its arguments) is pickled now. The layer is rebuilt when the function's
        source, its arguments or the global values it reads change.

        Args:
            raw_f: A named function (not a lambda).
            env: Environment variables for the build.
            secrets: Secrets whose keys are set in the build's environment.
            volumes: Volumes to mount during the build.
            network_file_systems: Not supported; must be empty.
            gpu: A GPU to build on.
            cpu: Cores for the build container.
            memory: MiB for the build container.
            timeout: Seconds the function may run, up to 24 h.
            cloud: Ignored placement hint, kept for Modal compatibility.
            region: Ignored placement hint, kept for Modal compatibility.
            force_build: Rebuild this layer and everything after it.
            args: Positional arguments for the function.
            kwargs: Keyword arguments for the function.
            include_source: Kept for Modal compatibility; the function is always shipped by value.
        """
        what = "Image.run_function()"
        if not callable(raw_f):
            raise InvalidError(f"Argument to Image.run_function must be a function, not {type(raw_f).__name__}.")
        if getattr(raw_f, "__name__", "") == "<lambda>":
            raise InvalidError("Image.run_function does not support lambda functions; define it with `def`.")
        if network_file_systems:
            raise InvalidError(f"{what}: network_file_systems are not supported; use volumes instead.")
        cpu_pair, memory_pair = parse_cpu(cpu), parse_memory(memory)
        fixed = {
            "function_name": getattr(raw_f, "__qualname__", repr(raw_f)),
            "module": getattr(raw_f, "__module__", None),
            "timeout": validate_timeout(timeout),
            "cpu": cpu_pair[0] if cpu_pair else None,
            "memory": memory_pair[0] if memory_pair else None,
            **_args.step_args("run_function", env, gpu),
        }
        refs = _args.step_refs(_args.secret_list(what, secrets), _args.volume_map(what, volumes))
        call_args, call_kwargs = tuple(args), dict(kwargs)

        def make() -> Resolved:
            payload, cache_key = _image_files.pickle_build_function(what, raw_f, call_args, call_kwargs)
            files = FileList()
            files.add_snapshot("function.pkl", payload)
            return {**fixed, "cache_key": cache_key}, files

        return self._extend("run_function", make, force_build=force_build, refs=refs)

    def env(self, vars: dict[str, str]) -> Image:
        """Set environment variables in the image (and in containers that run it).

        Example:
            >>> Image.debian_slim(python_version="3.12").env({"HF_HOME": "/cache"})._definition()[
            ...     "layers"][-1]["args"]
            {'vars': {'HF_HOME': '/cache'}}
        """
        if not isinstance(vars, dict):
            raise InvalidError(f"Image.env() takes a dict of str to str, got {type(vars).__name__}.")
        bad = [key for key, val in vars.items() if not isinstance(key, str) or not isinstance(val, str)]
        if bad:
            raise InvalidError(f"Image ENV variables must be strings. Invalid keys: {bad}")
        args = {"vars": dict(vars)}
        return self._extend("env", lambda: (args, FileList()))

    def workdir(self, path: str | PurePosixPath) -> Image:
        """Set the working directory for later build steps and for functions.

        Example:
            >>> Image.debian_slim(python_version="3.12").workdir("/app")._definition()["layers"][-1]["args"]
            {'path': '/app'}
        """
        text = str(path)
        if not PurePosixPath(text).is_absolute():
            raise InvalidError(f"Image.workdir({text!r}): the path must be absolute, e.g. \"/app\".")
        args = {"path": posixpath.normpath(text)}
        return self._extend("workdir", lambda: (args, FileList()))

    # ---------------------------------------------------------------------------------------
    # Local files

    def add_local_file(self, local_path: str | Path, remote_path: str, *, copy: bool = False) -> Image:
        """Add a local file at `remote_path` (absolute; ending in "/" keeps the file's name).

        With copy=False (the default) the file is attached when a container starts, so changing
        it doesn't rebuild the image; copy=True bakes it into a layer so build steps can follow.
        """
        remote = _args.remote_path("add_local_file", remote_path)
        local = Path(local_path).expanduser()
        if remote.endswith("/"):
            remote = remote + local.name
        remote_dir, name = posixpath.split(posixpath.normpath(remote))

        def make() -> Resolved:
            files = FileList()
            files.add_file(name, _image_files.existing_file("image.add_local_file()", local))
            return {"remote_path": remote_dir, "copy": copy}, files

        return self._extend("add_local_file", make, copy=copy)

    def add_local_dir(self, local_path: str | Path, remote_path: str, *, copy: bool = False,
                      ignore: Ignore = []) -> Image:  # noqa: B006 - Modal's signature
        """Add a local directory's contents at `remote_path` (absolute).

        `__pycache__`, `.git` and `*.pyc` are always left out.

        Args:
            local_path: The directory.
            remote_path: Where its contents appear in the container.
            copy: Bake the files into a layer (True) or attach them at container start (False).
            ignore: Files to leave out: dockerignore-style patterns (relative to `local_path`,
                e.g. ["*.venv", "**/*.csv"]), or a callable taking the relative Path.
        """
        remote = posixpath.normpath(_args.remote_path("add_local_dir", remote_path))
        local = Path(local_path).expanduser()

        def make() -> Resolved:
            return {"remote_path": remote, "copy": copy}, _image_files.walk_dir(
                "image.add_local_dir()", local, ignore)

        return self._extend("add_local_dir", make, copy=copy)

    def add_local_python_source(self, *modules: str, copy: bool = False,
                                ignore: Ignore = NON_PYTHON_FILES) -> Image:
        """Add local Python packages or modules under `/root`, importable by name in containers.

        Modules are found without importing them where possible. By default only `.py` files are
        included, never dot-prefixed files or `__pycache__`.

        Args:
            *modules: Top-level or dotted module names, e.g. "mylib" or "mylib.utils".
            copy: Bake the files into a layer (True) or attach them at container start (False).
            ignore: Files to leave out, as in add_local_dir; defaults to everything but `*.py`.
        """
        if not all(isinstance(m, str) and m for m in modules):
            raise InvalidError("Local Python modules must be specified as strings.")
        names = list(modules)

        def make() -> Resolved:
            return {"remote_path": "/root", "copy": copy, "modules": names}, _image_files.python_sources(
                names, ignore)

        return self._extend("add_local_python_source", make, copy=copy)

    def copy_local_file(self, local_path: str | Path, remote_path: str = "./") -> Image:
        """Removed in Modal 1.0; use `add_local_file(..., copy=True)`."""
        raise DeprecationError("Image.copy_local_file() was removed in Modal 1.0; use "
                               "Image.add_local_file(local_path, remote_path, copy=True) instead.")

    def copy_local_dir(self, local_path: str | Path, remote_path: str = ".",
                       ignore: Ignore = []) -> Image:  # noqa: B006
        """Removed in Modal 1.0; use `add_local_dir(..., copy=True)`."""
        raise DeprecationError("Image.copy_local_dir() was removed in Modal 1.0; use "
                               "Image.add_local_dir(local_path, remote_path, copy=True) instead.")

    # ---------------------------------------------------------------------------------------
    # Helpers

    def pipe(self, func: Callable[..., Image], *args: Any, **kwargs: Any) -> Image:
        """Apply a reusable recipe: `image.pipe(f, x)` is `f(image, x)`."""
        result = func(self, *args, **kwargs)
        if not isinstance(result, Image):
            raise InvalidError(f"Image.pipe({getattr(func, '__name__', func)!r}) must return an Image, got "
                               f"{type(result).__name__}.")
        return result

    @contextlib.contextmanager
    def imports(self) -> Iterator[None]:
        """Import packages at global scope that only the container has.

        Locally, an ImportError inside the block is swallowed, so the program still loads. Inside a
        container the error is kept on the image and raised by `_raise_import_errors()` when this
        image is the one the container runs; other images' failed imports are ignored there.

        Example:
            >>> image = Image.debian_slim(python_version="3.12")
            >>> with image.imports():
            ...     import a_package_that_is_not_installed_here
        """
        try:
            yield
        except Exception as exc:
            self._inside_exceptions.append(exc)
            if not isinstance(exc, ImportError):
                warnings.warn(f"caught a non-ImportError exception in an `imports()` block: {exc!r}",
                              stacklevel=3)

    def _raise_import_errors(self) -> None:
        """Raise the first exception an `imports()` block of this image (or its bases) swallowed."""
        if self._inside_exceptions:
            raise self._inside_exceptions[0]


__all__ = ["AUTO_DOCKERIGNORE", "NON_PYTHON_FILES", "SUPPORTED_PYTHON_SERIES", "Image"]
