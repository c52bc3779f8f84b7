"""The control plane: one asyncio process that owns all state (design §2).

It serves the protocol in `skylift._protocol.api` to clients, containers and worker agents, keeps
the input queues and leases, runs the autoscaler and placement, and persists what must survive a
restart (apps, functions, spawned calls, logs, images) through a `Store`.

Start it with `python -m skylift.server --home DIR`, or in-process with `ControlPlane`.
"""

from __future__ import annotations

from .control_plane import ControlPlane
from .settings import Settings

__all__ = ["ControlPlane", "Settings"]
