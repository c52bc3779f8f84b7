"""`Image`'s Python-package steps: pip_install, uv_pip_install and installs from requirements files
or a pyproject.toml (a part of `Image`, kept apart by concept; see image.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..exception import InvalidError
from . import args as _args
from . import files as _image_files
from .args import Resolved
from .files import FileList

if TYPE_CHECKING:
    from ..image import Image


class _Extends(Protocol):
    def _extend(self, step: str, make: Callable[[], Resolved], *, force_build: bool = False,
                refs: dict[str, Any] | None = None, copy: bool = True) -> Image: ...


class PythonPackages:
    """The Python-package steps of `Image` (each returns a new Image with one more layer)."""

    def pip_install(
        self: _Extends,
        *packages: str | list[str],
        find_links: str | None = None,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install Python packages with pip.

        Args:
            *packages: Requirement specifiers, e.g. "numpy" or "httpx~=0.27"; lists are flattened.
            find_links: Passed as --find-links.
            index_url: Passed as --index-url.
            extra_index_url: Passed as --extra-index-url.
            pre: Allow pre-releases (--pre).
            extra_options: More pip options, e.g. "--no-build-isolation".
            force_build: Rebuild this layer and everything after it.
            env: Environment variables for the build.
            secrets: Secrets whose keys are set in the build's environment.
            gpu: A GPU to build on.

        Example:
            >>> image = Image.debian_slim(python_version="3.12").pip_install("click", ["httpx~=0.27"])
            >>> image._definition()["layers"][-1]["args"]["packages"]
            ['click', 'httpx~=0.27']
        """
        pkgs = _args.flatten("Image.pip_install()", packages)
        if not pkgs:
            return cast("Image", self)  # nothing to install: the same image
        _args.no_flags("pip_install", pkgs)
        args = {"packages": pkgs, **_args.pip_args("pip_install", find_links, index_url, extra_index_url, pre,
                                                    extra_options), **_args.step_args("pip_install", env, gpu)}
        return self._extend("pip_install", lambda: (args, FileList()), force_build=force_build,
                            refs=_args.step_refs(_args.secret_list("Image.pip_install()", secrets)))

    def uv_pip_install(
        self: _Extends,
        *packages: str | list[str],
        requirements: list[str] | None = None,
        find_links: str | None = None,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        force_build: bool = False,
        uv_version: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install Python packages with `uv pip install` (fast).

        Args:
            *packages: Requirement specifiers; lists are flattened.
            requirements: Local requirements files to install from; read now.
            uv_version: The uv version to install with; the worker's default when None.
            **others: As in `pip_install`.
        """
        what = "Image.uv_pip_install()"
        pkgs = _args.flatten(what, packages)
        if requirements is not None and (not isinstance(requirements, list)
                                         or not all(isinstance(r, str) for r in requirements)):
            raise InvalidError(f"{what}: requirements must be None or a list of file paths.")
        reqs = list(requirements or [])
        if not pkgs and not reqs:
            return cast("Image", self)  # nothing to install: the same image
        _args.no_flags("uv_pip_install", pkgs)
        fixed = {"packages": pkgs, "uv_version": uv_version,
                 **_args.pip_args("uv_pip_install", find_links, index_url, extra_index_url, pre, extra_options),
                 **_args.step_args("uv_pip_install", env, gpu)}

        def make() -> Resolved:
            files = FileList()
            names = []
            for i, req in enumerate(reqs):
                # Files of the same name from different folders stay apart by their index.
                name = f"{i}_{Path(req).name}"
                files.add_snapshot(name, _image_files.read_local(what, req))
                names.append(name)
            return {**fixed, "requirements": names}, files

        return self._extend("uv_pip_install", make, force_build=force_build,
                            refs=_args.step_refs(_args.secret_list(what, secrets)))

    def pip_install_from_requirements(
        self: _Extends,
        requirements_txt: str,
        find_links: str | None = None,
        *,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install the packages of a local requirements.txt (read now) with pip.

        Args:
            requirements_txt: Path to the requirements file.
            **others: As in `pip_install`.
        """
        what = "Image.pip_install_from_requirements()"
        fixed = {"requirements": "requirements.txt",
                 **_args.pip_args("pip_install_from_requirements", find_links, index_url, extra_index_url, pre,
                                  extra_options),
                 **_args.step_args("pip_install_from_requirements", env, gpu)}

        def make() -> Resolved:
            files = FileList()
            files.add_snapshot("requirements.txt", _image_files.read_local(what, requirements_txt))
            return fixed, files

        return self._extend("pip_install_from_requirements", make, force_build=force_build,
                            refs=_args.step_refs(_args.secret_list(what, secrets)))

    def pip_install_from_pyproject(
        self: _Extends,
        pyproject_toml: str,
        optional_dependencies: list[str] = [],  # noqa: B006 - Modal's signature; never mutated
        *,
        find_links: str | None = None,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install `[project].dependencies` of a local pyproject.toml (read now) with pip.

        Args:
            pyproject_toml: Path to the pyproject.toml.
            optional_dependencies: Keys of `[project.optional-dependencies]` to install as well.
            **others: As in `pip_install`.
        """
        what = "Image.pip_install_from_pyproject()"
        fixed = {"optional_dependencies": list(optional_dependencies),
                 **_args.pip_args("pip_install_from_pyproject", find_links, index_url, extra_index_url, pre,
                                  extra_options),
                 **_args.step_args("pip_install_from_pyproject", env, gpu)}

        def make() -> Resolved:
            packages = _image_files.pyproject_dependencies(what, pyproject_toml, list(optional_dependencies))
            return {"packages": packages, **fixed}, FileList()

        return self._extend("pip_install_from_pyproject", make, force_build=force_build,
                            refs=_args.step_refs(_args.secret_list(what, secrets)))
