"""`skylift serve FILE`: run an app ephemerally and hot-reload it when its source changes.

Like `modal serve` (Modal's `serving.py`): web URLs get the `-dev` suffix and stay the same
across reloads. This process creates the ephemeral app, keeps it alive (heartbeats), streams its
logs and watches the app's source directory and the local files its images add (watchfiles). On
every change a **fresh interpreter** (`python -m skylift.cli.serve --publish ...`) re-imports the
file and publishes its functions into the same app; functions whose definition changed get new
containers (the old ones drain), unchanged ones keep theirs. Ctrl-C stops the app and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from .. import _log_stream, _output, config
from .._client import Client, run_sync, spawn_background
from .._protocol import api
from ..exception import InvalidError
from ._common import env_option
from ._import import find_app, import_ref, split_ref

IGNORED_NAMES = frozenset({".DS_Store", "4913"})  # 4913: vim's write probe
IGNORED_DIRS = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache",
                          "node_modules"})


class Watched:
    """What reaches the containers, so what a change of means a reload: the app's file (or its whole
    package) and the local files its images add. Anything else in those directories is ignored."""

    def __init__(self, module_name: str, app: Any) -> None:
        module = sys.modules[module_name]
        top = sys.modules.get(module_name.split(".")[0])
        self.dirs: set[Path] = set()  # everything below counts
        self.files: set[Path] = set()
        package_paths = list(getattr(top, "__path__", []) or [])
        if "." in module_name and package_paths:
            self.dirs.add(Path(package_paths[0]).resolve())
        elif getattr(module, "__file__", None):
            self.files.add(Path(str(module.__file__)).resolve())
        images = [app._image] + [fn._options.get("image") for fn in app._functions.values()] + \
                 [c._service._options.get("image") for c in app._classes.values()]
        for image in images:
            if image is None:
                continue
            with contextlib.suppress(Exception):
                self.files.update(Path(local).resolve() for local in image._local_files().values())

    def roots(self) -> list[Path]:
        """Directories to watch: each watched file's directory, and the watched directories."""
        candidates = sorted(self.dirs | {f.parent for f in self.files}, key=lambda p: len(p.parts))
        kept: list[Path] = []
        for root in candidates:  # drop directories inside ones already watched
            if not any(root.is_relative_to(k) for k in kept):
                kept.append(root)
        return kept

    def __call__(self, change: Any, path: str) -> bool:
        p = Path(path)
        if p.name in IGNORED_NAMES or p.suffix in (".pyc", ".swp", ".swx") or p.name.endswith("~"):
            return False
        if any(part in IGNORED_DIRS for part in p.parts):
            return False
        return p in self.files or any(p.is_relative_to(d) for d in self.dirs)


class Server:
    """The parent process: one ephemeral app, republished by a child interpreter on each change."""

    def __init__(self, ref: str, module_flag: bool, name: str | None) -> None:
        self.ref = ref
        self.module_flag = module_flag
        self.name = name
        self.app_id = ""
        self.environment = config.environment_name()
        self._stop = asyncio.Event()
        self._logs_stream: _log_stream.LogStream | None = None
        self._child: subprocess.Popen[bytes] | None = None

    def publish(self) -> bool:
        """Re-import the file in a fresh interpreter and publish it into the app. True if it worked."""
        if self._child is not None and self._child.poll() is None:
            self._child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(5)
        cmd = [sys.executable, "-m", "skylift.cli.serve", "--publish", self.app_id, "--env", self.environment,
               self.ref] + (["-m"] if self.module_flag else [])
        env = dict(os.environ)
        env["SKYLIFT_ENVIRONMENT"] = self.environment
        self._child = subprocess.Popen(cmd, env=env)
        return self._child.wait() == 0

    async def _create(self, app_name: str | None, description: str | None, strict_containers: bool) -> str:
        got = await Client.from_env().call("app.create", {"name": app_name, "environment": self.environment,
                                                          "state": "ephemeral", "description": description,
                                                          "strict_containers": strict_containers})
        return str(got["app_id"])

    async def _heartbeat(self) -> None:
        client = Client.from_env()
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), api.APP_HEARTBEAT_INTERVAL)
            with contextlib.suppress(Exception):
                await client.call("app.heartbeat", {"app_id": self.app_id})

    async def _logs(self) -> None:
        self._logs_stream = _log_stream.LogStream(Client.from_env(), self.app_id)
        await self._logs_stream.run()

    def run(self, timeout: float | None) -> None:
        target, app_var = split_ref(self.ref)
        module = import_ref(target, is_module=self.module_flag)
        app = find_app(module, app_name=app_var)
        watched = Watched(module.__name__, app)
        logs_timeout = _log_stream.logs_timeout()
        self.app_id = run_sync(self._create(self.name or app.name, app.description, app.strict_containers))
        _output.step(f"Initialized. App {self.app_id} in environment '{self.environment}' (serving).")
        background = [spawn_background(self._heartbeat()), spawn_background(self._logs())]
        stop = threading.Event()
        deadline = time.monotonic() + timeout if timeout else None
        if deadline is not None:
            timer = threading.Timer(timeout or 0, stop.set)
            timer.daemon = True
            timer.start()
        try:
            if not self.publish():
                _output.warn("The app failed to load; fix it and save: serve reloads on every change.")
            _output.step(f"Serving {self.ref}. Watching {', '.join(str(p) for p in watched.roots())} for "
                         "changes (Ctrl-C to stop).")
            self._watch(watched, stop)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            if self._child is not None and self._child.poll() is None:
                self._child.terminate()
            run_sync(self._shutdown(logs_timeout))
            for future in background:
                future.cancel()
            _output.step("Stopped serving.")

    def _watch(self, watched: Watched, stop: threading.Event) -> None:
        from watchfiles import watch

        for changes in watch(*watched.roots(), watch_filter=watched, stop_event=stop, debounce=200, step=50,
                             rust_timeout=500, yield_on_timeout=False, raise_interrupt=True):
            names = sorted({Path(p).name for _, p in changes})
            _output.step(f"Changed: {', '.join(names[:5])}{' …' if len(names) > 5 else ''}. Reloading.")
            started = time.monotonic()
            if self.publish():
                _output.step(f"Reloaded in {time.monotonic() - started:.2f}s.")
            else:
                _output.warn("Reload failed (see above); still serving the previous version.")

    async def _shutdown(self, logs_timeout: float) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            await Client.from_env().call("app.disconnect", {"app_id": self.app_id, "reason": "serve stopped"})
        # The app's containers stop and run their @exit hooks; print up to their last line (bounded).
        stream = self._logs_stream
        if stream is not None and not await stream.wait_end(logs_timeout):
            _log_stream.warn_incomplete(f"app {self.app_id}", logs_timeout)


@click.command("serve")
@click.argument("ref")
@click.option("-m", "module_flag", is_flag=True, help="REF is a module path (package.module), not a file.")
@click.option("-n", "--name", default=None, help="Name of the app run.")
@click.option("--timeout", type=float, default=None, help="Stop serving after this many seconds.")
@env_option
def serve_cmd(ref: str, module_flag: bool, name: str | None, timeout: float | None) -> None:
    """Serve an app's web endpoints with hot reload: `skylift serve app.py`. URLs end in -dev."""
    with _output.enable_output():
        Server(ref, module_flag, name).run(timeout)


# ---- the child: publish the app once --------------------------------------------------------------


def _publish_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="skylift serve (reload)")
    parser.add_argument("--publish", required=True, help="app id")
    parser.add_argument("--env", default=None)
    parser.add_argument("-m", dest="module_flag", action="store_true")
    parser.add_argument("ref")
    args = parser.parse_args(argv)
    from .._runner import create_objects

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.env:
        config.set_environment_override(args.env)
    target, app_var = split_ref(args.ref)
    try:
        module = import_ref(target, is_module=args.module_flag)
        app = find_app(module, app_name=app_var)
    except Exception as exc:  # the user's code: show it (their frames only), keep serving the previous version
        from .. import _traceback

        if _traceback.full_requested():
            import traceback

            traceback.print_exc()
        else:
            print(_traceback.format_user_traceback(exc), file=sys.stderr, end="")
        print(f"skylift serve: can't load {args.ref}: {exc}", file=sys.stderr)
        return 1

    async def publish() -> None:
        client = Client.from_env()
        app._app_id = args.publish
        function_ids = await create_objects(client, app, args.publish)
        await client.call("app.publish", {"app_id": args.publish, "state": "ephemeral",
                                          "function_ids": function_ids})

    try:
        with _output.enable_output():
            run_sync(publish())
    except InvalidError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_publish_main(sys.argv[1:]))
