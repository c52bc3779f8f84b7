"""What `python -m skylift._runtime` does, start to finish.

1. Connect to the control plane as this container (`SKYLIFT_SERVER_URL`, `SKYLIFT_TASK_ID`,
   `SKYLIFT_TASK_TOKEN`, set by the worker) and fetch the definition (`container.init`).
2. Import the user's code, build the class instance from its parameters, run `@enter` hooks.
   A crash here is reported with `container.init_failed` and the container exits 1.
3. `container.ready`, then the input loop (`inputs.InputLoop`) until the control plane says
   stop or SIGTERM arrives; then `@exit` hooks, and exit 0.

Exit codes: 0 stopped cleanly; 1 user code failed to load, or a cancelled input could not be
interrupted; 2 the container could not talk to the control plane.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from .._protocol import api
from .._protocol.rpc import ConnectionLost, RpcError
from .._serialization import decode_params
from .._version import __version__
from . import user_code
from .connection import ReconnectingClient
from .inputs import InputLoop
from .profile import StartProfile

if TYPE_CHECKING:
    from .web import WebRuntime

# After the last input, user threads that are not daemons get this long to finish (Modal: 30 s).
THREAD_GRACE_SECONDS = 30.0
# A container waits this long for a restarted control plane before giving up.
RECONNECT_SECONDS = 120.0
# Set by the worker when the container has volumes (`_volumes.mount.ENV_VOLUMES`): only then is that module loaded.
ENV_VOLUMES = "SKYLIFT_VOLUMES"
# The running input loop and its event loop: `modal.experimental.stop_fetching_inputs()` stops it.
current_inputs: tuple[InputLoop, asyncio.AbstractEventLoop] | None = None


def _log(message: str) -> None:
    print(f"skylift: {message}", file=sys.stderr, flush=True)


@dataclass
class Preloaded:
    """A container forked from a memory snapshot: its code is loaded and `snap=True` hooks ran."""

    service: user_code.Service
    definition: dict[str, Any]
    profile: StartProfile


async def run(preloaded: Preloaded | None = None) -> int:
    """The whole life of the container; returns its exit code."""
    env = os.environ
    required = (api.ENV_SERVER_URL, api.ENV_TASK_ID, api.ENV_TASK_TOKEN)
    missing = [name for name in required if not env.get(name)]
    if missing:
        _log(f"{', '.join(missing)} not set: this module runs inside a skylift container a worker starts")
        return 2
    hello = {"token": env[api.ENV_TASK_TOKEN], "role": api.ROLE_CONTAINER, "version": __version__,
             "task_id": env[api.ENV_TASK_ID]}
    rpc = ReconnectingClient(env[api.ENV_SERVER_URL], hello, give_up_after=RECONNECT_SECONDS)
    try:
        return await _serve(rpc, preloaded)
    except (RpcError, ConnectionLost, OSError) as exc:
        _log(f"lost the control plane: {exc!r}")
        return 2
    finally:
        await rpc.close()


async def _serve(rpc: ReconnectingClient, preloaded: Preloaded | None = None) -> int:
    profile = preloaded.profile if preloaded is not None else StartProfile.from_env()
    with profile.phase("connect_ms"):
        init: dict[str, Any] = await rpc.call("container.init")
    definition: dict[str, Any] = init["definition"]
    if definition.get("sandbox"):  # a sandbox's container runs commands, not a function (docs/sandboxes.md)
        from . import sandbox_main

        return await sandbox_main.serve(rpc, definition)
    try:
        if preloaded is None:
            with profile.phase("import_ms"):
                service = user_code.load(definition, decode_params(init.get("params")))
            with profile.phase("snap_hooks_ms"):
                await service.enter_pre_snapshot()
        else:
            service = preloaded.service
            if msgpack.packb(preloaded.definition) != msgpack.packb(definition):
                raise RuntimeError("this container was forked from a memory snapshot of another version of the "
                                   "function; the worker's snapshot key is wrong (please report it)")
        with profile.phase("enter_ms"):
            await service.enter_post_snapshot()
        endpoints: WebRuntime | None = None
        if _serves_web(definition):  # web apps, ASGI lifespan startup (the module only when needed)
            from . import web

            endpoints = await web.prepare(service, rpc, definition)
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            raise
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(tb)
        sys.stderr.flush()
        await rpc.call("container.init_failed", {"error": f"{type(exc).__name__}: {exc}", "traceback": tb})
        return 1
    await rpc.call("container.ready", {"profile": profile.wire()})

    # With web endpoints, outputs wait for the web responses queued ahead of them (web.OrderedCaller).
    inputs = InputLoop(endpoints.ordered(rpc) if endpoints is not None else rpc, service, definition)
    loop = asyncio.get_running_loop()
    global current_inputs
    current_inputs = (inputs, loop)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, inputs.stop)
    await inputs.run()
    if inputs.fatal:
        return inputs.exit_code
    try:
        if endpoints is not None:
            await endpoints.shutdown()
        await service.exit()
    except Exception:
        _log(f"an @exit hook failed:\n{traceback.format_exc()}")
    await inputs.sender.flush()
    if os.environ.get(ENV_VOLUMES):
        from .._volumes import mount as _volume_mount

        await _volume_mount.commit_all_at_exit(rpc)  # a normal exit commits mounted volumes, as in Modal
    return inputs.exit_code


def _serves_web(definition: dict[str, Any]) -> bool:
    """Whether the function or a method of the class is a web endpoint (`web.endpoints` finds which)."""
    methods = definition.get("methods") or {}
    return bool(definition.get("web")) or any(isinstance(m, dict) and m.get("web") for m in methods.values())


def _wait_for_user_threads() -> bool:
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.daemon:
            continue
        _log(f"waiting up to {THREAD_GRACE_SECONDS:.0f} s for thread {thread.name!r} to finish")
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return False
    return True


def main() -> None:
    code = asyncio.run(run())
    sys.stdout.flush()
    sys.stderr.flush()
    if code == 0 and _wait_for_user_threads():
        sys.exit(0)  # a normal exit, so the user's atexit handlers run
    os._exit(code)
