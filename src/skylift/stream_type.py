"""`modal.stream_type.StreamType`: where a sandbox process's stdout/stderr go (Modal's values)."""

from __future__ import annotations

import subprocess
from enum import Enum


class StreamType(Enum):
    """`PIPE`: kept for the program to read; `DEVNULL`: discarded; `STDOUT`: printed here as it comes."""

    DEVNULL = subprocess.DEVNULL
    PIPE = subprocess.PIPE
    STDOUT = subprocess.STDOUT

    def __repr__(self) -> str:
        return f"{self.__module__}.{self.__class__.__name__}.{self.name}"
