"""`modal.FilePatternMatcher`: dockerignore-style patterns as a callable, for `ignore=` of
`Image.add_local_dir` / `add_local_python_source` and friends (the same matching as a list of patterns).

    >>> from pathlib import Path
    >>> matcher = FilePatternMatcher("**/*.py", "!keep.py")
    >>> matcher(Path("pkg/a.py")), matcher(Path("keep.py")), matcher(Path("data.csv"))
    (True, False, False)
    >>> (~matcher)(Path("data.csv"))
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._images.files import PatternMatcher


@dataclass
class Pattern:
    """One parsed pattern, as Modal's: `exclusion` for a leading `!`."""

    cleaned_pattern: str = ""
    dirs: list[str] = field(default_factory=list)
    exclusion: bool = False


class _AbstractPatternMatcher:
    _custom_repr: str | None = None

    def __call__(self, path: Path) -> bool:
        raise NotImplementedError

    def __invert__(self) -> _AbstractPatternMatcher:
        """The opposite matcher: True where this one is False (`~FilePatternMatcher("**/*.py")` keeps
        only Python files when passed as `ignore=`)."""
        return _CustomPatternMatcher(lambda path: not self(path))

    def can_prune_directories(self) -> bool:
        """Whether a matched directory can be skipped whole (not when a later pattern may re-include
        something below it)."""
        return False

    def _with_repr(self, custom_repr: str) -> _AbstractPatternMatcher:
        self._custom_repr = custom_repr
        return self

    def __repr__(self) -> str:
        return self._custom_repr or super().__repr__()


class _CustomPatternMatcher(_AbstractPatternMatcher):
    def __init__(self, predicate: Callable[[Path], bool]) -> None:
        self._predicate = predicate

    def __call__(self, path: Path) -> bool:
        return self._predicate(path)


class FilePatternMatcher(_AbstractPatternMatcher):
    """Matches relative file paths against dockerignore-style patterns (`*`, `**`, `?`, `[...]`, `!` to
    re-include); a path matches when it or one of its parent directories does."""

    _file_path: str | Path | None
    _pattern_strings: Sequence[str] | None

    def __init__(self, *pattern: str) -> None:
        self._pattern_strings = pattern
        self._file_path = None
        self._matcher: PatternMatcher | None = None

    @classmethod
    def from_file(cls, file_path: str | Path) -> FilePatternMatcher:
        """Patterns from a file (one a line, `#` comments), read when the matcher is first used — so a
        definition that names a file only the local machine has still imports in the container."""
        instance = cls()
        instance._pattern_strings = None
        instance._file_path = file_path
        return instance

    def _lines(self) -> list[str]:
        if self._file_path is not None:
            return Path(self._file_path).read_text("utf8").splitlines()
        return list(self._pattern_strings or [])

    @property
    def patterns(self) -> list[Pattern]:
        """The parsed patterns (loading them from the file if needed)."""
        parsed = []
        for raw in self._lines():
            text = raw.strip().strip(os.path.sep)
            if not text or text.startswith("#"):
                continue
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise ValueError('Illegal exclusion pattern: "!"')
                text = text[1:]
            text = os.path.normpath(text)
            parsed.append(Pattern(cleaned_pattern=text, dirs=text.split(os.path.sep), exclusion=exclusion))
        return parsed

    def can_prune_directories(self) -> bool:
        return not any(p.exclusion for p in self.patterns)

    def __call__(self, path: Path) -> bool:
        if self._matcher is None:
            self.patterns  # noqa: B018 (parses and validates: an illegal "!" raises here, as in Modal)
            self._matcher = PatternMatcher(self._lines())
        return self._matcher(path)


# Keeps only Python files when passed as `ignore=` (Modal's default for `add_local_python_source`).
NON_PYTHON_FILES = (~FilePatternMatcher("**/*.py"))._with_repr(f"{__name__}.NON_PYTHON_FILES")

__all__ = ["NON_PYTHON_FILES", "FilePatternMatcher"]
