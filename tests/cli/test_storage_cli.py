"""`skylift secret | volume | dict | queue`, run in-process against the session's platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import skylift as modal
from skylift import config
from skylift.cli.main import cli


@pytest.fixture(autouse=True)
def _platform(platform: object) -> Iterator[None]:
    yield
    config.set_environment_override(None)  # --env sets a process-wide override


def sk(*args: str, ok: bool = True, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, f"skylift {' '.join(args)} failed:\n{result.output}"
    return result


def test_secret_commands_never_print_values(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nexport FROM_FILE='quoted value'\n")
    out = sk("secret", "create", "cli-secret", "A=alpha-value", "B=-", "--from-dotenv", str(dotenv),
             stdin="from-stdin\n").output
    assert "A, B, FROM_FILE" in out and "alpha-value" not in out
    assert "already exists" in sk("secret", "create", "cli-secret", "A=x", ok=False).output
    sk("secret", "create", "cli-secret", "A=x", "--force")
    listing = sk("secret", "list").output
    assert "cli-secret" in listing and "alpha" not in listing and "from-stdin" not in listing
    assert "cli-secret" in sk("secret", "list", "--env", "main").output
    assert "cli-secret" not in sk("secret", "list", "--env", "elsewhere").output
    config.set_environment_override(None)
    assert "not KEY=VALUE" in sk("secret", "create", "bad", "novalue", ok=False).output
    sk("secret", "delete", "cli-secret", "-y")
    assert "not found" in sk("secret", "delete", "cli-secret", "-y", ok=False).output
    sk("secret", "delete", "cli-secret", "-y", "--allow-missing")


def test_volume_commands(tmp_path: Path) -> None:
    sk("volume", "create", "cli-vol")
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("A")
    (tmp_path / "src" / "sub" / "b.txt").write_text("B")
    sk("volume", "put", "cli-vol", str(tmp_path / "src"), "/data")
    sk("volume", "put", "cli-vol", str(tmp_path / "src" / "a.txt"), "/")
    assert "exists" in sk("volume", "put", "cli-vol", str(tmp_path / "src" / "a.txt"), "/", ok=False).output
    listing = sk("volume", "ls", "cli-vol").output
    assert "a.txt" in listing and "data/" in listing
    assert "data/sub/b.txt" in sk("volume", "ls", "cli-vol", "/data", "-r").output
    sk("volume", "cp", "cli-vol", "/a.txt", "/copy.txt")
    assert sk("volume", "get", "cli-vol", "/copy.txt", "-").output == "A"
    sk("volume", "get", "cli-vol", "/data", str(tmp_path / "out"))
    assert (tmp_path / "out" / "data" / "sub" / "b.txt").read_text() == "B"
    sk("volume", "rm", "cli-vol", "/data", "-r")
    assert "data" not in sk("volume", "ls", "cli-vol").output
    assert "cli-vol" in sk("volume", "list").output
    sk("volume", "delete", "cli-vol", "-y")
    assert "skylift volume create" in sk("volume", "ls", "cli-vol", ok=False).output


def test_dict_and_queue_commands() -> None:
    sk("dict", "create", "cli-dict")
    d = modal.Dict.from_name("cli-dict")
    d["greeting"] = "hello"
    d["n"] = 42
    assert sk("dict", "get", "cli-dict", "greeting").output.strip() == "hello"
    items = sk("dict", "items", "cli-dict").output
    assert "greeting" in items and "42" in items
    assert "no key" in sk("dict", "get", "cli-dict", "missing", ok=False).output
    assert "cli-dict" in sk("dict", "list").output
    sk("dict", "clear", "cli-dict", "-y")
    assert len(d) == 0
    sk("dict", "delete", "cli-dict", "-y")

    sk("queue", "create", "cli-queue")
    q = modal.Queue.from_name("cli-queue")
    q.put_many(["first", "second"])
    q.put("p", partition="part")
    assert sk("queue", "len", "cli-queue").output.strip() == "2"
    assert sk("queue", "len", "cli-queue", "--total").output.strip() == "3"
    assert sk("queue", "peek", "cli-queue", "2").output.split() == ["first", "second"]
    assert q.len() == 2  # peek doesn't consume
    sk("queue", "clear", "cli-queue", "-p", "part", "-y")
    assert q.len(total=True) == 2
    sk("queue", "clear", "cli-queue", "--all", "-y")
    assert q.len(total=True) == 0
    sk("queue", "delete", "cli-queue", "-y")
    assert "not found" in sk("queue", "len", "cli-queue", ok=False).output
