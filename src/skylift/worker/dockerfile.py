"""Reading a Dockerfile: instructions, their arguments, and `$VARIABLE` substitution (pure functions).

    for ins in parse(text): ...            # Instruction(keyword="RUN", text="apt-get update", line=3)
    expand("${HOME:-/root}/x", {"HOME": "/home/a"})  == "/home/a/x"
    words(ins)                             # JSON form ["a", "b"] or shell-like words

What the builder does with them is in `registry_steps`; which instructions it supports is listed
there (SUPPORTED, IGNORED).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass


class DockerfileError(ValueError):
    """The Dockerfile can't be read; the message names the line."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    text: str
    line: int

    def __str__(self) -> str:
        return f"{self.keyword} {self.text}".strip()


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped.

    Example:
        >>> [str(i) for i in parse("FROM x\\n# note\\nRUN a && \\\\\\n    b\\n")]
        ['FROM x', 'RUN a && b']
    """
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (and parser directives) even inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        full = " ".join(p for p in pending if p)
        pending = []
        keyword, _, rest = full.partition(" ")
        if not re.fullmatch(r"[A-Za-z]+", keyword):
            raise DockerfileError(f"line {start}: {full[:60]!r} is not an instruction")
        instructions.append(Instruction(keyword.upper(), rest.strip(), start))
    if pending:
        raise DockerfileError(f"line {start}: the last instruction ends with a line continuation")
    return instructions


_VARIABLE = re.compile(r"\\\$|\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
                       r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, variables: dict[str, str]) -> str:
    """`$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alternative}` as Docker substitutes them.

    Example:
        >>> expand("a=$A b=${B:-bee} c=${A:+set} \\\\$A", {"A": "1"})
        'a=1 b=bee c=set $A'
    """
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        name = match.group("braced") or match.group("plain")
        value = variables.get(name, "")
        op = match.group("op")
        if op == "-":
            return value or expand(match.group("word"), variables)
        if op == "+":
            return expand(match.group("word"), variables) if value else ""
        return value

    return _VARIABLE.sub(replace, text)


def is_json_form(text: str) -> bool:
    return text.lstrip().startswith("[")


def words(text: str, line: int) -> list[str]:
    """The arguments of an instruction: its JSON array form, or shell-like words."""
    if is_json_form(text):
        try:
            value = json.loads(text)
        except ValueError:
            raise DockerfileError(f"line {line}: {text!r} is not a valid JSON array") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DockerfileError(f"line {line}: the JSON form must be an array of strings")
        return list(value)
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise DockerfileError(f"line {line}: {exc}") from None


def assignments(text: str, line: int, keyword: str) -> list[tuple[str, str]]:
    """`ENV a=1 b="two"` or the old `ENV a 1` form; `ARG name[=default]` gives (name, "") without one."""
    parts = words(text, line)
    if not parts:
        raise DockerfileError(f"line {line}: {keyword} needs a name")
    if keyword == "ENV" and "=" not in parts[0]:
        if len(parts) < 2:
            raise DockerfileError(f"line {line}: ENV {parts[0]} needs a value")
        name, _, value = text.strip().partition(" ")
        return [(name, value.strip())]
    pairs = []
    for part in parts:
        name, eq, value = part.partition("=")
        if keyword == "ENV" and not eq:
            raise DockerfileError(f"line {line}: ENV {part!r} needs a value (write {part}=value)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise DockerfileError(f"line {line}: {name!r} is not a valid variable name")
        pairs.append((name, value))
    return pairs


def split_flags(parts: list[str]) -> tuple[dict[str, str], list[str]]:
    """`--chown=a --from=x src dest` → ({"chown": "a", "from": "x"}, ["src", "dest"])."""
    flags: dict[str, str] = {}
    rest = list(parts)
    while rest and rest[0].startswith("--"):
        key, _, value = rest.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, rest
