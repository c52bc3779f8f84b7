"""`modal.FilePatternMatcher` answers as the real one does: the same matrix of patterns and paths run under
the pinned real `modal` (the cached venv of modal_api_report) and under skylift through `import modal`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from modal_api_report import MODAL_VERSION, ROOT, modal_python

MATRIX = str(Path(__file__).resolve().parent / "file_pattern_matrix.py")


@pytest.mark.timeout(900)
def test_file_pattern_matcher_matches_modals() -> None:
    try:
        python = modal_python()
    except subprocess.CalledProcessError:
        pytest.skip(f"can't install modal=={MODAL_VERSION} into the compat cache")
    theirs = json.loads(subprocess.run([str(python), MATRIX], check=True, capture_output=True, text=True,
                                       timeout=120, env={**os.environ, "PYTHONPATH": ""}).stdout)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("SKYLIFT_MODAL_ALIAS", None)
    ours = json.loads(subprocess.run([sys.executable, "-m", "skylift.compat", MATRIX], check=True,
                                     capture_output=True, text=True, timeout=120, env=env).stdout)
    assert ours == theirs


def test_an_ignore_file_is_read_when_first_used(tmp_path: Path) -> None:
    from skylift.file_pattern_matcher import FilePatternMatcher

    ignore = tmp_path / ".ignore"
    matcher = FilePatternMatcher.from_file(ignore)  # not there yet: fine until it is used
    ignore.write_text("# comment\n*.log\n!keep.log\n")
    assert matcher(Path("a.log")) and not matcher(Path("keep.log")) and not matcher.can_prune_directories()
    with pytest.raises(ValueError, match="Illegal exclusion"):
        FilePatternMatcher("!")(Path("x"))


def test_an_image_takes_it_as_ignore(tmp_path: Path) -> None:
    import skylift
    from skylift._images.files import walk_dir

    (tmp_path / "pkg").mkdir()
    for name in ("pkg/a.py", "pkg/b.txt", "c.py"):
        (tmp_path / name).write_text("x")
    files = walk_dir("add_local_dir", tmp_path, ~skylift.FilePatternMatcher("**/*.py"))
    assert sorted(e["path"] for e in files.entries) == ["c.py", "pkg/a.py"]
