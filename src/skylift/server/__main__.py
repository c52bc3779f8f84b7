"""`python -m skylift.server --home DIR [--host 127.0.0.1] [--port 0] [--no-worker]`

Runs the control plane in the foreground until SIGTERM/SIGINT or the `server.shutdown` RPC, with
the embedded worker agent as a child process unless `--no-worker`. Writes `DIR/server.json` once
listening and removes it on the way out. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

from .. import _private_home
from .._protocol import ids
from .control_plane import ControlPlane
from .embedded_worker import WorkerSupervisor

log = logging.getLogger("skylift.server")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m skylift.server", description="Run the skylift control plane.")
    parser.add_argument("--home", default=os.environ.get("SKYLIFT_HOME") or str(Path.home() / ".skylift"),
                        help="state directory (token, state.db, blobs, server.json); default $SKYLIFT_HOME")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: any free port)")
    parser.add_argument("--no-worker", action="store_true", help="don't start the embedded worker agent")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    home = Path(args.home).expanduser().resolve()
    _private_home.make_private(home)
    # One control plane per home: a second one would fight over state.db and server.json.
    lock = _private_home.open_private(home / "server.lock", "wb")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another skylift control plane is running with home %s", home)
        return 1
    cp = ControlPlane(home, host=args.host, port=args.port)
    # Before start(): server.json appears during it, and a SIGTERM sent by whoever saw that file
    # must stop the server cleanly rather than kill it.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, cp.shutdown_requested.set)
    try:
        await cp.start()
    except OSError as exc:
        log.error("can't listen on %s:%s: %s", args.host, args.port, exc)
        await cp.stop()
        return 1
    supervisor = None
    if not args.no_worker:
        worker_id = ids.new_id("worker")
        supervisor = WorkerSupervisor(
            cp.unix_url, home, worker_id=worker_id,
            on_exit=lambda code: cp.worker_api.lose_by_id(
                worker_id, f"the worker agent process exited (code {code})"))
        supervisor.start()
    try:
        await cp.shutdown_requested.wait()
    finally:
        log.info("shutting down")
        if supervisor is not None:
            await supervisor.stop()
        await cp.stop()
        lock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
