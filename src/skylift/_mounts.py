"""User source that reaches the container the way Modal's does: the file (or top-level package)
that defines a function is mounted at `/root` and imported there by module name.
"""

from __future__ import annotations

import hashlib
import os
import site
import sys
import sysconfig
from pathlib import Path
from typing import Any

from .exception import InvalidError

_SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
MAX_SOURCE_FILES = 5000


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _installed_roots() -> list[str]:
    roots = set(site.getsitepackages()) | {site.getusersitepackages()}
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        roots.add(sysconfig.get_paths()[key])
    return [os.path.realpath(r) for r in roots if r]


def module_file(module_name: str) -> Path | None:
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def source_mount(module_name: str) -> tuple[dict[str, Any], dict[str, Path]] | None:
    """The mount holding `module_name`'s source: (wire mount, sha256 → local path), or None when
    the module is installed (it belongs in the image) or has no file."""
    top = module_name.split(".")[0]
    if top == "skylift":
        return None
    if "." in module_name:
        package = sys.modules.get(top)
        paths = list(getattr(package, "__path__", []) or [])
        if not paths:
            return None
        root = Path(paths[0]).resolve()
        if _is_installed(root):
            return None
        return _dir_mount(root, f"/root/{top}")
    file = module_file(module_name)
    if file is None or _is_installed(file):
        return None
    if file.name == "__init__.py":
        return _dir_mount(file.parent, f"/root/{top}")
    sha = file_sha256(file)
    mount = {"remote_path": "/root", "files": [{"path": f"{module_name}.py", "sha256": sha,
                                                "mode": file.stat().st_mode & 0o777}]}
    return mount, {sha: file}


def _is_installed(path: Path) -> bool:
    text = str(path)
    return any(text.startswith(root + os.sep) for root in _installed_roots())


def _dir_mount(root: Path, remote_path: str) -> tuple[dict[str, Any], dict[str, Path]]:
    files: list[dict[str, Any]] = []
    local: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(_SKIP_SUFFIXES):
                continue
            path = Path(dirpath) / name
            sha = file_sha256(path)
            files.append({"path": str(path.relative_to(root)), "sha256": sha, "mode": path.stat().st_mode & 0o777})
            local[sha] = path
            if len(files) > MAX_SOURCE_FILES:
                raise InvalidError(
                    f"the package at {root} has more than {MAX_SOURCE_FILES} files to mount; set include_source=False "
                    "and add what the container needs with Image.add_local_python_source()")
    return {"remote_path": remote_path, "files": files}, local
