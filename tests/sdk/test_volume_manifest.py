"""The pure volume decisions: path rules, last-write-wins commits, commit and reload plans."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from skylift._volumes import files
from skylift._volumes.manifest import (
    DIRECTORY,
    FILE,
    UNKNOWN_MTIME,
    Base,
    Entry,
    PathError,
    Stat,
    apply_commit,
    list_directory,
    normalize_path,
    plan_commit,
    plan_reload,
    trusted_mtime,
)


def f(path: str, content: str = "x", mode: int = 0o644, mtime: int = 100) -> Entry:
    return Entry(path, FILE, (content * 64,) if content else (), len(content), mode, mtime)


def d(path: str) -> Entry:
    return Entry(path, DIRECTORY, (), 0, 0o755, 100)


def manifest(*entries: Entry) -> dict[str, Entry]:
    return {e.path: e for e in entries}


@pytest.mark.parametrize(("raw", "expected"), [
    ("/a/b.txt", "a/b.txt"), ("a//b/", "a/b"), ("/", ""), ("", ""), ("./a/./b", "a/b"), ("a\\b", "a/b"),
])
def test_normalize_path(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", ["../x", "/a/../../b", "a/\x00", "x" * 5000])
def test_bad_paths_are_refused(raw: str) -> None:
    with pytest.raises(PathError):
        normalize_path(raw)


def test_entry_wire_round_trip_and_validation() -> None:
    entry = f("a/b", "q")
    assert Entry.from_wire(entry.to_wire()) == entry
    bad_entries = (["a", 3, [], 0, 0, 0], ["a", 1, [1], 0, 0, 0], ["a", 1, [], -1, 0, 0], "nope",
                   ["../a", 1, [], 0, 0, 0])
    for bad in bad_entries:
        with pytest.raises(ValueError):
            Entry.from_wire(bad)


def test_commit_puts_create_parents_and_last_write_wins() -> None:
    result = apply_commit({}, [f("a/b/c.txt", "1")], [], mtime=5)
    assert set(result.manifest) == {"a", "a/b", "a/b/c.txt"}
    assert result.manifest["a"].type == DIRECTORY
    later = apply_commit(result.manifest, [f("a/b/c.txt", "2")], [], mtime=6)
    assert later.manifest["a/b/c.txt"].blocks == ("2" * 64,)
    assert [e.path for e in later.written] == ["a/b/c.txt"] and later.removed == []


def test_a_delete_names_only_what_the_committer_knew() -> None:
    # Container A mounted {x, dir/old}; B committed dir/new meanwhile; A deleted dir/ entirely.
    current = manifest(f("x"), d("dir"), f("dir/old"), f("dir/new"))
    result = apply_commit(current, [], ["dir/old", "dir"], mtime=7)
    assert "dir/new" in result.manifest and result.manifest["dir"].type == DIRECTORY
    assert "dir/old" not in result.manifest and result.removed == ["dir/old"]


def test_a_file_replacing_a_directory_and_the_reverse() -> None:
    current = manifest(d("p"), f("p/child"))
    result = apply_commit(current, [f("p", "file")], [], mtime=1)
    assert result.manifest == {"p": f("p", "file")} and "p/child" in result.removed
    back = apply_commit(result.manifest, [f("p/q", "z")], [], mtime=2)
    assert back.manifest["p"].type == DIRECTORY and "p/q" in back.manifest


def test_plan_commit_hashes_only_what_stat_cannot_vouch_for() -> None:
    base = {
        "same": Base(f("same", "a", mtime=1), 1_000_000_000),
        "touched": Base(f("touched", "a"), 1_000_000_000),
        "racy": Base(f("racy", "a"), UNKNOWN_MTIME),
        "gone": Base(f("gone"), 1),
        "dir": Base(d("dir"), 1),
        "dir-now-file": Base(d("dir-now-file"), 1),
    }
    scan = {
        "same": Stat(FILE, 1, 0o644, 1_000_000_000),
        "touched": Stat(FILE, 1, 0o644, 2_000_000_000),
        "racy": Stat(FILE, 1, 0o644, 5),
        "dir": Stat(DIRECTORY, 0, 0o755, 9),
        "new": Stat(FILE, 3, 0o644, 9),
        "newdir": Stat(DIRECTORY, 0, 0o755, 9),
        "dir-now-file": Stat(FILE, 1, 0o644, 9),
    }
    plan = plan_commit(base, scan)
    assert plan.to_hash == ["dir-now-file", "new", "racy", "touched"]
    assert plan.dirs == ["newdir"]
    assert plan.deletes == ["dir-now-file", "gone"]


def test_trusted_mtime_distrusts_recent_writes() -> None:
    now = time.time_ns()
    assert trusted_mtime(now - 10**9 * 10, now) == now - 10**9 * 10
    assert trusted_mtime(now - 1000, now) == UNKNOWN_MTIME


def test_plan_reload_brings_in_others_commits_and_keeps_local_changes() -> None:
    base = {
        "kept": Base(f("kept", "a"), 10),
        "changed-remotely": Base(f("changed-remotely", "a"), 10),
        "deleted-remotely": Base(f("deleted-remotely", "a"), 10),
        "edited-here": Base(f("edited-here", "a"), 10),
        "deleted-here": Base(f("deleted-here", "a"), 10),
    }
    scan = {p: Stat(FILE, 1, 0o644, 10) for p in base if p != "deleted-here"}
    scan["edited-here"] = Stat(FILE, 9, 0o644, 99)
    scan["new-here"] = Stat(FILE, 1, 0o644, 99)
    latest = manifest(f("kept", "a"), f("changed-remotely", "b"), f("edited-here", "b"), f("deleted-here", "a"),
                      f("new-remotely", "c"), f("new-here", "remote"))
    plan = plan_reload(base, latest, scan)
    assert sorted(e.path for e in plan.write) == ["changed-remotely", "new-remotely"]
    assert plan.remove == ["deleted-remotely"]
    assert set(plan.base) == {"kept", "edited-here", "deleted-here"}  # dirty ones keep their old base


def test_list_directory() -> None:
    m = manifest(d("a"), f("a/x"), d("a/b"), f("a/b/y"), f("top"))
    assert [e.path for e in list_directory(m, "", False) or []] == ["a", "top"]
    assert [e.path for e in list_directory(m, "a", False) or []] == ["a/b", "a/x"]
    assert [e.path for e in list_directory(m, "a", True) or []] == ["a/b", "a/b/y", "a/x"]
    assert list_directory(m, "top", False) == [m["top"]]
    assert list_directory(m, "missing", False) is None


def test_scan_hash_write_and_base_files(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    entry = Entry("sub/file.bin", FILE, (), 0, 0o600, 1_700_000_000)
    data = os.urandom(1000)
    blocks, size, kept = files.hash_blocks(_write(tmp_path / "src", data), keep_up_to=4096)
    assert size == 1000 and kept == [data] and len(blocks) == 1
    entry = entry._replace(blocks=tuple(blocks), size=size)
    mtime_ns = files.write_file(root, entry, [data])
    assert (root / "sub/file.bin").read_bytes() == data and mtime_ns == 1_700_000_000 * 10**9
    (root / "link").symlink_to(root / "sub/file.bin")
    scan = files.scan(root)
    assert scan["sub/file.bin"] == Stat(FILE, 1000, 0o600, mtime_ns) and scan["sub"].type == DIRECTORY
    assert "link" not in scan  # symlinks are not part of a volume
    base = {"sub/file.bin": Base(entry, mtime_ns)}
    files.write_base(tmp_path / "b.base", 3, base)
    assert files.read_base(tmp_path / "b.base") == (3, base)
    with open(root / "sub/file.bin") as handle:
        assert files.open_files_under(root) == [str((root / "sub/file.bin").resolve())]
        assert handle.readable()
    assert files.open_files_under(root) == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
