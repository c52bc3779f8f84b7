"""Local entrypoint arguments come from the function's signature, as in `modal run`."""

from __future__ import annotations

import datetime
from typing import Literal

import pytest

from skylift.cli._signature import parse_args
from skylift.exception import InvalidError


def main(n: int, name: str = "x", ratio: float = 0.5, dry: bool = False,
         mode: Literal["a", "b"] = "a", level: Literal[1, 2] = 1, when: datetime.datetime | None = None) -> None: ...


def test_parses_typed_flags() -> None:
    args, kwargs = parse_args(main, ["--n", "3", "--name", "y", "--dry", "--mode", "b", "--level", "2"], prog="p")
    assert args == ()
    assert kwargs["n"] == 3 and kwargs["name"] == "y" and kwargs["dry"] is True
    assert kwargs["mode"] == "b" and kwargs["level"] == 2 and kwargs["ratio"] == 0.5


def test_missing_required_and_bad_type_are_clear() -> None:
    with pytest.raises(InvalidError, match="--n"):
        parse_args(main, [], prog="p")
    with pytest.raises(InvalidError, match="not a valid integer"):
        parse_args(main, ["--n", "three"], prog="p")


def test_varargs_take_argv_verbatim() -> None:
    def raw(*argv: str) -> None: ...

    assert parse_args(raw, ["--anything", "1"], prog="p") == (("--anything", "1"), {})


def test_unsupported_type_names_the_parameter() -> None:
    def bad(items: list[int]) -> None: ...

    with pytest.raises(InvalidError, match="items"):
        parse_args(bad, [], prog="p")


def test_unannotated_parameters_take_their_defaults_type() -> None:
    def f(i, n=3, ratio=0.5, dry=False, name="x"):  # type: ignore[no-untyped-def]
        ...

    _, kwargs = parse_args(f, ["--i", "4", "--n", "5", "--ratio", "2", "--dry", "--name", "y"], prog="p")
    # Without an annotation or a default the value stays a string, as in `modal run`.
    assert kwargs == {"i": "4", "n": 5, "ratio": 2.0, "dry": True, "name": "y"}


def test_conversion_errors_name_the_option_and_the_parameter() -> None:
    def f(batch_size=8):  # type: ignore[no-untyped-def]
        ...

    expected = r"'--batch-size': 'many' is not a valid integer \(parameter batch_size: int\)"
    with pytest.raises(InvalidError, match=expected):
        parse_args(f, ["--batch-size", "many"], prog="p")
    with pytest.raises(InvalidError, match="No such option '--bogus'"):
        parse_args(f, ["--bogus", "1"], prog="p")
