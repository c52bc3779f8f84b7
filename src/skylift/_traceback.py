"""Tracebacks as a user wants to read them: their own frames, the platform's hidden (as Modal does).

A failing `skylift run` used to print 30-45 frames of click, skylift and `concurrent.futures` before
the user's own. Here, frames from skylift's package, click/typer, the import machinery, asyncio,
concurrent.futures, threading and runpy are dropped, both from local tracebacks and from the remote
traceback a container sent (which arrives as text). A remote exception is shown as one traceback:
the caller's frames, then the container's, then the error.

`SKYLIFT_TRACEBACK=1` (or Modal's `MODAL_TRACEBACK=1`) keeps every frame.

Nothing here prints: it formats (looking at paths only to tell whose a frame is), the CLI prints.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterable

ENV_FULL = ("SKYLIFT_TRACEBACK", "MODAL_TRACEBACK")
REMOTE_NOTE_PREFIX = "\nRemote traceback:\n"
HEADER = "Traceback (most recent call last):"
HINT = "(skylift, click and standard-library frames hidden; SKYLIFT_TRACEBACK=1 shows them all)"

# os.path, not pathlib: this is imported in containers too, when a call they made fails.
_PACKAGE = os.path.dirname(os.path.realpath(__file__))
# Library and stdlib frames that are plumbing to a user, wherever the interpreter lives (the
# container's Python may sit elsewhere than this one).
_LIBRARY = re.compile(
    r"/(site-packages|skylift-runtime|runtime-site)/(click|typer|cloudpickle|msgpack|synchronicity)/"
    r"|/lib/python3\.\d+/(asyncio/|concurrent/futures/|importlib/|threading\.py$|runpy\.py$)"
    r"|^<frozen (importlib\._bootstrap|importlib\._bootstrap_external|runpy)>$"
    r"|/bin/skylift$"
)
# Where a copy of skylift lives elsewhere: installed, the container's runtime (/opt/skylift-runtime),
# a worker's runtime-site, or a source checkout.
_SKYLIFT_IN_PATH = re.compile(r"/(?:site-packages|skylift-runtime|runtime-site|src)/skylift/(.+\.py)$")
_FRAME_LINE = re.compile(r'^(\s*)File "(.*)", line \d+')
_SEPARATORS = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)


def full_requested(environ: dict[str, str] | None = None) -> bool:
    """Whether the user asked for whole tracebacks (SKYLIFT_TRACEBACK=1 or MODAL_TRACEBACK=1)."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip().lower() not in ("", "0", "false", "no") for name in ENV_FULL)


def is_platform_frame(filename: str) -> bool:
    """Whether a frame's file is the platform's (skylift, click, stdlib plumbing), not the user's.

    A path under another copy of skylift (the container's) counts when the same module exists here.
    """
    if _LIBRARY.search(filename):
        return True
    if os.path.realpath(filename).startswith(_PACKAGE + os.sep):
        return True
    match = _SKYLIFT_IN_PATH.search(filename)
    return match is not None and os.path.isfile(os.path.join(_PACKAGE, match.group(1)))


def trim_text(text: str) -> tuple[str, int]:
    """Drop the platform's frames from a formatted traceback (or any text holding one).

    Returns the text and how many frames were dropped. A frame is its `File "...", line N` line
    and the more-indented source and caret lines under it.
    """
    out: list[str] = []
    dropped = 0
    skip_indent: int | None = None
    for line in text.splitlines(keepends=True):
        indent = len(line) - len(line.lstrip(" "))
        if skip_indent is not None:
            if line.strip() and indent > skip_indent:
                continue
            skip_indent = None
        match = _FRAME_LINE.match(line)
        if match and is_platform_frame(match.group(2)):
            skip_indent = len(match.group(1))
            dropped += 1
            continue
        out.append(line)
    return "".join(out), dropped


def _user_frames(tb: object) -> tuple[list[traceback.FrameSummary], int]:
    frames = traceback.extract_tb(tb)  # type: ignore[arg-type]
    kept = [f for f in frames if not is_platform_frame(f.filename)]
    return kept, len(frames) - len(kept)


def has_user_frames(exc: BaseException) -> bool:
    """Whether any frame of `exc`'s own traceback is the user's (their code raised it or called in)."""
    return bool(_user_frames(exc.__traceback__)[0])


def split_remote(text: str) -> tuple[str, list[str], list[str]] | None:
    """Split a remote traceback into (the chained tracebacks before it, the last one's frame
    lines, its error lines), or None when it isn't shaped like a Python traceback.

    Notes on the error (a nested call's own remote traceback) stay in the error lines.
    """
    lines = text.splitlines(keepends=True)
    start = 0
    while True:
        try:
            header = next(i for i in range(start, len(lines)) if lines[i].rstrip("\n") == HEADER)
        except StopIteration:
            return None
        end = header + 1
        while end < len(lines) and lines[end].startswith("  "):
            end += 1
        separator = None
        for i in range(end, len(lines)):
            stripped = lines[i].strip()
            if stripped == REMOTE_NOTE_PREFIX.strip():
                break  # a nested call's traceback, inside this error's notes
            if stripped in _SEPARATORS:
                separator = i
                break
        if separator is None:
            return "".join(lines[:header]), lines[header + 1:end], lines[end:]
        start = separator + 1


def _exception_lines(exc: BaseException) -> list[str]:
    notes = getattr(exc, "__notes__", None)
    remote_note = [n for n in notes or [] if isinstance(n, str) and n.startswith(REMOTE_NOTE_PREFIX)]
    if not remote_note:
        return traceback.format_exception_only(type(exc), exc)
    # The note holds the whole remote traceback: it is shown once, trimmed, in place of the note.
    summary = traceback.TracebackException(type(exc), exc, None)
    summary.__notes__ = [n for n in notes or [] if n not in remote_note]
    return list(summary.format_exception_only())


def _format_one(exc: BaseException) -> tuple[list[str], int, bool]:
    """Lines for one exception of a chain, frames dropped, and whether any user frame was shown."""
    frames, dropped = _user_frames(exc.__traceback__)
    local = list(traceback.StackSummary.from_list(frames).format()) if frames else []
    remote = getattr(exc, "__skylift_remote_traceback__", None)
    if isinstance(remote, str) and remote:
        trimmed, more = trim_text(remote)
        dropped += more
        parts = split_remote(trimmed)
        if parts is not None:
            before, remote_frames, error = parts
            body = [HEADER + "\n", *local, *remote_frames] if local or remote_frames else []
            return [before, *body, *error], dropped, bool(local or remote_frames)
        lines = [HEADER + "\n", *local] if local else []
        return [*lines, *_exception_lines(exc), REMOTE_NOTE_PREFIX.lstrip("\n"), trimmed], dropped, True
    body = [HEADER + "\n", *local] if local else []
    return [*body, *_exception_lines(exc)], dropped, bool(local)


def _chain(exc: BaseException) -> Iterable[tuple[BaseException, str | None]]:
    """The exceptions of a chain, oldest first, each with the separator that follows it."""
    seen: set[int] = set()
    out: list[tuple[BaseException, str | None]] = []
    current: BaseException | None = exc
    separator: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append((current, separator))
        if current.__cause__ is not None:
            current, separator = current.__cause__, _SEPARATORS[0]
        elif current.__context__ is not None and not current.__suppress_context__:
            current, separator = current.__context__, _SEPARATORS[1]
        else:
            current = None
    return reversed(out)


def format_user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` as the CLI shows it: the user's frames and the error, nothing else.

    When nothing of the user's is left (a bug in skylift itself), the whole traceback is returned,
    since that is what a bug report needs. A SyntaxError needs no frames: its own lines point at
    the file, line and column.
    """
    out: list[str] = []
    dropped = 0
    shown_user = False
    for one, separator in _chain(exc):
        lines, more, user = _format_one(one)
        out.extend(lines)
        dropped += more
        shown_user = shown_user or user or isinstance(one, SyntaxError)
        if separator is not None:
            out.append(f"\n{separator}\n\n")
    if not shown_user:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = "".join(out)
    if dropped:
        text = text.rstrip("\n") + "\n" + HINT + "\n"
    return text
