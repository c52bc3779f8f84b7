"""Say so when a function failed because its container's ephemeral disk is full.

A write past the disk (the writable layer, /tmp and /root together: worker/container/disk.py) fails
with ENOSPC, which alone reads like the host's problem. The failure the caller sees, and the
container's log, get a note that names the limit and how to raise it.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping

from .._protocol import api


def _is_disk_full(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the error may be wrapped by the user's code
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_note(exc: BaseException, env: Mapping[str, str] = os.environ) -> str | None:
    """The note for `exc`, or None when it is not a full ephemeral disk.

    Example:
        >>> disk_full_note(OSError(errno.ENOSPC, "No space left on device"), {api.ENV_EPHEMERAL_DISK_MB: "64"})[:46]
        "skylift: the container's ephemeral disk (64 Mi"
        >>> disk_full_note(ValueError("x"), {api.ENV_EPHEMERAL_DISK_MB: "64"}) is None
        True
    """
    size = env.get(api.ENV_EPHEMERAL_DISK_MB)
    if not size or not _is_disk_full(exc):
        return None
    return (f"skylift: the container's ephemeral disk ({size} MiB: its writable layer, /tmp and /root) is full; "
            f"raise the limit with @app.function(ephemeral_disk=...) in MiB, or write large data to a Volume")


def annotate(exc: BaseException) -> None:
    """Attach the note to `exc` (shown with its traceback) and write it to the container's log."""
    note = disk_full_note(exc)
    if note is None or note in getattr(exc, "__notes__", ()):  # a batch's inputs share one exception
        return
    print(note, file=sys.stderr, flush=True)
    if hasattr(exc, "add_note"):  # Python 3.11+; before, the log line is what tells
        exc.add_note(note)
