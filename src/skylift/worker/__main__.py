"""`python -m skylift.worker --server-url URL --token-file FILE --home DIR`: run a worker agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from .._protocol.rpc import RpcError
from . import host
from .agent import STOP_GRACE_SECONDS, WorkerAgent
from .runtimes import RuntimeUnavailable, make_runtime


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m skylift.worker", description=__doc__)
    parser.add_argument("--server-url", help="the control plane, tcp://host:port or unix:///path (required)")
    parser.add_argument("--token-file", type=Path, help="file holding the worker token (required)")
    parser.add_argument("--home", required=True, type=Path, help="directory for images, mounts and caches")
    parser.add_argument("--worker-id", help="register under this id (the control plane assigns one otherwise)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="a label for placement, e.g. region=eu-west (repeatable)")
    parser.add_argument("--stop-grace", type=float, default=STOP_GRACE_SECONDS,
                        help="seconds a stopped container gets before SIGKILL")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop (and stop every container) as soon as the process that started this worker "
                             "is gone: the embedded platform's worker must not outlive its control plane")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="with --exit-with-parent: the pid of the process that started this worker (default: "
                             "this process's parent at start, which is already init if that process died first)")
    parser.add_argument("--reap-only", action="store_true",
                        help="kill and remove the containers (sandboxes, cgroups) that workers of --home left "
                             "running, then exit: what `skylift server stop` runs after a worker it had to kill")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.reap_only and (args.server_url is None or args.token_file is None):
        parser.error("--server-url and --token-file are required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s worker %(levelname)s %(message)s")
    if args.reap_only:
        from .container import available as container_available  # Linux only: imported when asked

        if container_available()[0]:
            from .container import cleanup_stale
            from .container.reap import reap_and_log, worker_group

            reap_and_log(worker_group(args.home))
            # Its processes gone, what the killed worker's containers held goes too: their overlay
            # roots and ephemeral disks under tasks/, which no other worker of this home uses now.
            cleanup_stale(args.home / "tasks")
        return 0
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"--label {item!r}: write it as KEY=VALUE", file=sys.stderr)
            return 2
        labels[key] = value
    try:
        token = args.token_file.read_text().strip()
    except OSError as exc:
        print(f"can't read the token file {args.token_file}: {exc}", file=sys.stderr)
        return 2
    args.home.mkdir(parents=True, exist_ok=True)

    try:
        runtime = make_runtime(os.environ, args.home, has_gpus=bool(host.detect_gpus()))
    except RuntimeUnavailable as exc:
        print(f"can't start the worker: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        agent = WorkerAgent(args.server_url, token, args.home, runtime=runtime, labels=labels,
                            worker_id=args.worker_id, stop_grace=args.stop_grace)
        agent.exit_with_parent = args.exit_with_parent
        if args.parent_pid is not None:
            agent.parent_pid = args.parent_pid
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, agent.stop)
        await agent.run()
        reap = getattr(runtime, "reap", None)  # the container runtime: what outlasted the agent's patience
        if reap is not None:
            reap()

    try:
        asyncio.run(serve())
    except RpcError as exc:
        print(f"the control plane at {args.server_url} refused this worker: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
