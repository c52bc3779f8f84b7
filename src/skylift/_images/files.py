"""The local files image steps need, selected and hashed at definition time.

Each step returns a `FileList`: wire entries `{"path", "sha256", "mode"}` (paths relative to where
the step puts them) plus `local`, sha256 → a local file with those bytes, for the uploader. Bytes
made in memory (a pickled build function, a snapshot of a requirements file) are written once to a
per-process, content-addressed temp folder so they too have a path and can't change under us.

Ignore rules follow `.dockerignore` (and Modal's FilePatternMatcher): patterns are matched against
the path relative to the root, `*` stays within one directory, `**` spans any number, a pattern
that matches a directory covers everything in it, `!pattern` re-includes, the last match wins.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import os
import posixpath
import re
import site
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .. import _hashing
from .._protocol import api
from ..exception import InvalidError

Ignore = Sequence[str] | Callable[[Path], bool]

_ALWAYS_SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
_ALWAYS_SKIPPED_SUFFIXES = (".pyc",)


_AUTO_DOCKERIGNORE_ONLY = ("AUTO_DOCKERIGNORE (the build context's .dockerignore) applies to Image.from_dockerfile() "
                           "only; pass ignore= patterns or a callable, e.g. ignore=[\"*.pyc\", \".venv\"].")


class _AutoDockerIgnore:
    """Use the context's `.dockerignore`, if there is one (the default for from_dockerfile)."""

    def __repr__(self) -> str:
        return "AUTO_DOCKERIGNORE"

    def __call__(self, path: Path) -> bool:
        raise InvalidError(_AUTO_DOCKERIGNORE_ONLY)


class _NonPythonFiles:
    """Ignore every file that isn't a `.py` file (the default for add_local_python_source)."""

    def __repr__(self) -> str:
        return "NON_PYTHON_FILES"

    def __call__(self, path: Path) -> bool:
        return path.suffix != ".py"


AUTO_DOCKERIGNORE = _AutoDockerIgnore()
NON_PYTHON_FILES = _NonPythonFiles()


# ---------------------------------------------------------------------------------------------
# Blob snapshots and the file list


_blob_dir: Path | None = None


def _snapshot_dir() -> Path:
    global _blob_dir
    if _blob_dir is None:
        import atexit
        import shutil
        import tempfile

        _blob_dir = Path(tempfile.mkdtemp(prefix="skylift-blobs-"))
        atexit.register(shutil.rmtree, _blob_dir, True)
    return _blob_dir


class FileList:
    """Files of one step: wire entries in the order added, and where their bytes are locally."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.local: dict[str, Path] = {}

    def add_file(self, rel_path: str, path: Path) -> None:
        sha = _hashing.sha256_file(path)
        self.entries.append({"path": rel_path, "sha256": sha, "mode": path.stat().st_mode & 0o777})
        # Absolute, so the uploader finds the file even if the program changes directory first.
        self.local.setdefault(sha, path.absolute())

    def add_snapshot(self, rel_path: str, data: bytes, mode: int = 0o644) -> None:
        sha = _hashing.sha256_bytes(data)
        target = _snapshot_dir() / sha
        if not target.exists():
            partial = target.with_suffix(".part")
            partial.write_bytes(data)
            partial.replace(target)
        self.entries.append({"path": rel_path, "sha256": sha, "mode": mode})
        self.local.setdefault(sha, target)


def read_local(what: str, path: str | Path) -> bytes:
    local = Path(path).expanduser()
    try:
        return local.read_bytes()
    except OSError as exc:
        raise InvalidError(f"{what}: can't read {str(local)!r} ({exc.strerror}); check the path, which is "
                           f"relative to the current directory {os.getcwd()!r}.") from exc


def existing_file(what: str, path: Path) -> Path:
    if not path.is_file():
        problem = "is a directory; use image.add_local_dir()" if path.is_dir() else "does not exist"
        raise InvalidError(f"{what}: the local file {str(path)!r} {problem} (paths are relative to "
                           f"{os.getcwd()!r}).")
    return path


# ---------------------------------------------------------------------------------------------
# Pattern matching


def _translate(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class PatternMatcher:
    """A dockerignore-style matcher: `matcher(Path("a/b.txt"))` is True when the path is matched."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._rules: list[tuple[bool, re.Pattern[str] | None]] = []
        for raw in patterns:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            negate = text.startswith("!")
            text = text[1:].strip() if negate else text
            text = posixpath.normpath(text.lstrip("/")) if text.lstrip("/") else "."
            # "." (the whole root) matches everything; None stands for that.
            regex = None if text == "." else re.compile(_translate(text) + r"\Z")
            self._rules.append((negate, regex))
        self.has_negations = any(negate for negate, _ in self._rules)

    def __call__(self, path: Path | PurePosixPath | str) -> bool:
        rel = PurePosixPath(Path(path).as_posix()).as_posix()
        parts = rel.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        matched = False
        for negate, regex in self._rules:
            if matched != negate:
                continue  # this rule can't change the outcome
            if regex is None or any(regex.match(c) for c in candidates):
                matched = not negate
        return matched


def _ignore_fn(ignore: Ignore) -> Callable[[Path], bool]:
    if ignore is AUTO_DOCKERIGNORE:
        raise InvalidError(_AUTO_DOCKERIGNORE_ONLY)
    if callable(ignore):
        return ignore
    if isinstance(ignore, str) or not isinstance(ignore, Sequence) or not all(isinstance(p, str) for p in ignore):
        raise InvalidError(f"ignore={ignore!r}: pass a list of patterns like [\"*.venv\", \"**/*.csv\"] or a "
                           "callable that takes a relative Path and returns True to leave it out.")
    return PatternMatcher(ignore)


# ---------------------------------------------------------------------------------------------
# Directories, modules, Dockerfile contexts


def _walk(root: Path, ignore: Callable[[Path], bool], files: FileList, prefix: str = "") -> None:
    prune = isinstance(ignore, PatternMatcher) and not ignore.has_negations
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if d not in _ALWAYS_SKIPPED_DIRS
                             and not (prune and ignore(rel_dir / d)))
        for name in sorted(filenames):
            rel = rel_dir / name
            path = here / name
            if name.endswith(_ALWAYS_SKIPPED_SUFFIXES) or not path.is_file() or ignore(rel):
                continue
            files.add_file(prefix + rel.as_posix(), path)


def walk_dir(what: str, local: Path, ignore: Ignore) -> FileList:
    if not local.is_dir():
        problem = "is a file; use image.add_local_file()" if local.exists() else "does not exist"
        raise InvalidError(f"{what}: the local directory {str(local)!r} {problem} (paths are relative to "
                           f"{os.getcwd()!r}).")
    files = FileList()
    _walk(local, _ignore_fn(ignore), files)
    return files


def find_module(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of `name`, found without importing it (or its parents) unless already imported."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__spec__", None) is not None:
        spec: importlib.machinery.ModuleSpec | None = module.__spec__
        return spec
    parent, _, _ = name.rpartition(".")
    search: list[str] | None = None
    if parent:
        parent_spec = find_module(parent)
        if parent_spec is None or not parent_spec.submodule_search_locations:
            return None
        search = list(parent_spec.submodule_search_locations)
    return importlib.machinery.PathFinder.find_spec(name, search)


def python_sources(modules: list[str], ignore: Ignore) -> FileList:
    ignore_fn = _ignore_fn(ignore)

    def keep(rel: Path) -> bool:
        # Dot-prefixed files and folders never ship, whatever `ignore` says (Modal's rule).
        return not any(part.startswith(".") for part in rel.parts) and not ignore_fn(rel)

    files = FileList()
    for name in modules:
        try:
            spec = find_module(name)
        except (ImportError, ValueError) as exc:
            raise InvalidError(f"add_local_python_source({name!r}): can't look up the module: {exc}") from exc
        remote = "/".join(name.split("."))
        if spec is not None and spec.submodule_search_locations:
            roots = [Path(p) for p in spec.submodule_search_locations if Path(p).is_dir()]
            for root in roots:
                _walk(root, lambda rel: not keep(rel), files, prefix=remote + "/")
            if roots:
                continue
        elif spec is not None and spec.origin and Path(spec.origin).is_file():
            origin = Path(spec.origin)
            files.add_file(posixpath.join(*name.split(".")[:-1], origin.name), origin)
            continue
        raise InvalidError(
            f"add_local_python_source({name!r}): no local module or package named {name!r} was found on "
            "sys.path (is it installed, or run from the right directory?). Pass the importable module name, "
            "e.g. \"mylib\" for mylib/__init__.py, or use add_local_dir() for other files.")
    return files


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            lines.append((keyword.upper(), rest.strip()))
    return lines


def copy_sources(text: str) -> list[str] | None:
    """The context paths the COPY/ADD lines of a Dockerfile read; None when unknowable ($VARs)."""
    import json
    import shlex

    sources: list[str] = []
    for keyword, rest in _dockerfile_instructions(text):
        if keyword not in ("COPY", "ADD"):
            continue
        if rest.startswith("["):
            try:
                words = [str(w) for w in json.loads(rest)]
            except ValueError:
                words = shlex.split(rest)
        else:
            words = shlex.split(rest)
        if any(w.startswith("--from") for w in words):
            continue  # copies from another stage or image, not the context
        operands = [w for w in words if not w.startswith("--")][:-1]
        for src in operands:
            if re.match(r"^[a-z][a-z0-9+.-]*://|^git@", src):
                continue  # ADD of a URL
            if "$" in src:
                return None
            sources.append(src)
    return sources


def dockerfile_context(text: str, context_dir: Path, dockerfile: Path, ignore: Ignore) -> FileList:
    files = FileList()
    sources = copy_sources(text)
    if sources == []:
        return files
    if not context_dir.is_dir():
        raise InvalidError(f"Image.from_dockerfile(): the context directory {str(context_dir)!r} does not exist.")
    ignore_fn: Callable[[Path], bool]
    if ignore is AUTO_DOCKERIGNORE:
        candidates = [dockerfile.parent / f"{dockerfile.name}.dockerignore", context_dir / ".dockerignore"]
        found = next((c for c in candidates if c.is_file()), None)
        ignore_fn = PatternMatcher(found.read_text("utf-8").splitlines() if found else [])
    else:
        ignore_fn = _ignore_fn(ignore)
    include = PatternMatcher(sources if sources is not None else ["."])

    def skip(rel: Path) -> bool:
        return not include(rel) or ignore_fn(rel)

    # Pruning by `include` would drop folders whose files a deeper pattern names, so walk it all.
    _walk(context_dir, skip, files)
    return files


# ---------------------------------------------------------------------------------------------
# pyproject.toml and run_function


def pyproject_dependencies(what: str, path: str, groups: list[str]) -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef, import-not-found, unused-ignore]

    data = read_local(what, path)
    try:
        config = tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidError(f"{what}: {path!r} is not valid TOML: {exc}") from exc
    project = config.get("project", {})
    if "dependencies" not in project:
        raise InvalidError(
            f"{what}: no [project.dependencies] in {path!r}. For [tool.poetry.dependencies], list the "
            "packages with pip_install(); see https://packaging.python.org/en/latest/guides/writing-pyproject-toml")
    deps = [str(d) for d in project["dependencies"]]
    optional = project.get("optional-dependencies", {})
    for group in groups:
        if group not in optional:
            raise InvalidError(f"{what}: no optional dependency group {group!r} in {path!r}; it has "
                               f"{sorted(optional) or 'none'}.")
        deps.extend(str(d) for d in optional[group])
    return deps


def _installed(path: str) -> bool:
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    real = os.path.realpath(path)
    return any(real.startswith(os.path.realpath(r) + os.sep) for r in roots if r)


def pickle_build_function(what: str, fn: Callable[..., Any], args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> tuple[bytes, str]:
    """cloudpickle of (fn, args, kwargs) with fn's own module by value, and a stable cache key.

    The pickle's bytes differ between processes, so the layer is keyed on what decides its
    result instead: the function's source, its arguments, and the plain global values it reads.
    """
    import cloudpickle

    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    module_file = getattr(module, "__file__", None)
    # The build container has no copy of the user's source, so their code travels inside the pickle.
    by_value = module is not None and module.__name__ != "__main__" and module_file is not None \
        and not _installed(module_file)
    try:
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        payload: bytes = cloudpickle.dumps((fn, args, kwargs), protocol=4)
        call_args = cloudpickle.dumps((args, kwargs), protocol=4)
    except Exception as exc:
        raise InvalidError(f"{what}: can't pickle {getattr(fn, '__name__', fn)!r} or its arguments: {exc}") from exc
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)
    if len(payload) > api.MAX_PAYLOAD_BYTES:
        raise InvalidError(f"{what}: the pickled function and arguments are {len(payload)} bytes; the limit is "
                           f"{api.MAX_PAYLOAD_BYTES}. Read large data from a Volume inside the function instead.")
    try:
        source = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        source = code.co_code if code is not None else repr(fn).encode()
    parts = [getattr(fn, "__qualname__", "").encode(), source, call_args]
    code = getattr(fn, "__code__", None)
    fn_globals = getattr(fn, "__globals__", {})
    for name in sorted(code.co_names if code is not None else ()):
        value = fn_globals.get(name)
        if value is None or inspect.ismodule(value) or inspect.isclass(value) or callable(value):
            continue
        try:
            parts.append(name.encode() + b"=" + cloudpickle.dumps(value, protocol=4))
        except Exception:
            continue  # an unpicklable global can't be part of the key; its changes won't rebuild
    return payload, _hashing.sha256_bytes(_hashing.canonical(parts))
