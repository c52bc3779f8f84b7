"""`python -m skylift.server` with the knobs the fault-injection suite turns.

    python tests/chaos/chaos_server.py --home DIR [--lease S] [--store-faults RATE] [--seed N] [--no-worker]

The same entry point, signal handling and embedded worker as the real server (it runs
`skylift.server.__main__.main`), with a shorter lease (the SIGSTOP scenario) and a store that
fails a fraction of its writes (faulty_store.py). On exit it logs the store's fault counts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from faulty_store import FaultyStore

import skylift.server.__main__ as server_main
from skylift.server import Settings
from skylift.server.sqlite_store import SqliteStore

log = logging.getLogger("skylift.chaos")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lease", type=float, default=None)
    parser.add_argument("--store-faults", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    ours, rest = parser.parse_known_args()
    overrides: dict[str, Any] = {}
    if ours.lease is not None:
        overrides.update(lease_seconds=ours.lease, worker_grace=ours.lease)
    settings = Settings(**overrides)
    stores: list[FaultyStore] = []
    real = server_main.ControlPlane

    def control_plane(home: Path | str, **kwargs: Any) -> Any:
        store = None
        if ours.store_faults:
            store = FaultyStore(SqliteStore(Path(home).resolve() / "state.db"), ours.store_faults, ours.seed)
            stores.append(store)
        return real(home, settings=settings, store=store, **kwargs)

    _exit_with_test()
    # serve() builds its ControlPlane by this name; everything else is the real server's code.
    server_main.ControlPlane = control_plane  # type: ignore[assignment,misc]
    try:
        return server_main.main(rest)
    finally:
        for store in stores:
            log.info("chaos store faults: %s", store.summary())


def _exit_with_test() -> None:
    """SIGTERM ourselves (a clean stop) once the test that started us is gone, however it died:
    a killed pytest must not leave a platform and its containers behind."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="chaos-parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
