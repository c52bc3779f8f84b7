"""Running and deploying an App: create its objects on the control plane, keep it alive, stream
its logs, and tear it down (Modal's `runner.py` flow, design §2).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _attachments, _log_stream, _output, config
from ._client import Client, run_async, run_sync, spawn_background
from ._definition import build_definition, function_code_location
from ._mounts import source_mount
from ._protocol import api
from .exception import ExecutionError, InvalidError

if TYPE_CHECKING:
    from .app import App
    from .functions import Function


def _all_functions(app: App) -> list[Function]:
    return list(app._functions.values()) + [c._service for c in app._classes.values()]


async def _upload(client: Client, local_files: dict[str, Path]) -> None:
    if not local_files:
        return
    hashes = sorted(local_files)
    missing: list[str] = []
    for i in range(0, len(hashes), 1000):
        got = await client.call("blob.missing", {"hashes": hashes[i:i + 1000]})
        missing.extend(got["missing"])
    sem = asyncio.Semaphore(8)

    async def put(sha: str) -> None:
        async with sem:
            data = await asyncio.to_thread(local_files[sha].read_bytes)
            await client.call("blob.put", {"sha256": sha, "data": data})

    await asyncio.gather(*(put(sha) for sha in missing))


async def build_image(client: Client, image: Any, *, label: str) -> str:
    """Register and build an image, streaming its build log; returns its id."""
    await _upload(client, image._local_files())
    # Secrets (and volumes) that build steps name are created or looked up now; the layers carry their ids.
    for obj in image._objects():
        await obj._hydrate()
    definition = {"layers": image._build_layers(lambda obj: obj._object_id)}
    got = await client.call("image.build", {"image": definition, "force_build": bool(config_force_build())})
    image_id: str = got["image_id"]
    status = got["status"]
    if status == "ready":
        return image_id
    offset = 0
    with _output.image_build(image_id, label) as build:  # the log, each step's duration, the total
        while True:
            st = await client.call("image.status", {"image_id": image_id, "log_offset": offset,
                                                    "timeout": api.MAX_POLL_SECONDS})
            for line in st.get("logs", []):
                build.log(line)
            offset = st.get("next_offset", offset)
            if st["status"] == "ready":
                return image_id
            if st["status"] == "failed":
                raise ExecutionError(f"Image build for {image_id} ({label}) failed:\n{st.get('error', '')}")


def config_force_build() -> bool:
    import os

    return os.environ.get("MODAL_FORCE_BUILD", "") not in ("", "0") or \
        os.environ.get("SKYLIFT_FORCE_BUILD", "") not in ("", "0")


async def create_objects(client: Client, app: App, app_id: str) -> dict[str, str]:
    """Build images, upload source, create every function; returns {tag: function id}."""
    from .image import Image

    images: dict[int, str] = {}
    mounted: set[str] = set()
    function_ids: dict[str, str] = {}
    functions = _all_functions(app)
    for fn in functions:
        opts = fn._options
        image = opts.get("image") or app._image or Image.debian_slim()
        if id(image) not in images:
            images[id(image)] = await build_image(client, image, label=fn._tag)
        mounts: list[dict[str, Any]] = []
        module, _, _ = function_code_location(fn)
        include_source = opts.get("include_source")
        if include_source is None:
            include_source = app._include_source
        if module is not None and include_source:
            found = source_mount(module)
            if found is not None:
                mount, local = found
                await _upload(client, local)
                mounts.append(mount)
                for f in mount["files"]:
                    key = f"{mount['remote_path']}/{f['path']}"
                    if key not in mounted:
                        mounted.add(key)
                        if len(mount["files"]) == 1:
                            _output.item(f"🔨 Created mount {local[f['sha256']]}")
                if len(mount["files"]) > 1 and mount["remote_path"] not in mounted:
                    mounted.add(mount["remote_path"])
                    _output.item(f"🔨 Created mount {mount['remote_path']} ({len(mount['files'])} files)")
        await _upload(client, image._local_files())
        mounts.extend(image._start_mounts())
        definition = build_definition(fn, images[id(image)], mounts)
        definition.update(await _attachments.resolve(app, fn))
        got = await client.call("function.create", {"app_id": app_id, "definition": definition})
        fn._set_hydrated(got["function_id"], definition)
        fn._web_urls = dict(got.get("web_urls") or {})
        function_ids[fn._tag] = got["function_id"]
        kind = "class" if fn._cls is not None else "function"
        if fn._web_urls:
            for key, url in sorted(fn._web_urls.items()):
                name = f"{fn._tag}.{key}" if key else fn._tag
                _output.item(f"🔨 Created web {'endpoint' if key else 'function'} {name} => {url}",
                             last=fn is functions[-1] and key == max(fn._web_urls))
        else:
            _output.item(f"🔨 Created {kind} {fn._tag}.", last=fn is functions[-1])
    return function_ids


class AppRun:
    """`with app.run():` — an ephemeral (or detached) app that lives as long as the block."""

    def __init__(self, app: App, *, detach: bool, environment_name: str | None, name: str | None) -> None:
        self.app = app
        self.detach = detach
        self.environment = config.environment_name(environment_name)
        self.name = name or app.name
        self._tasks: list[Any] = []
        self._stop = asyncio.Event()
        self._logs: _log_stream.LogStream | None = None
        self._logs_timeout = _log_stream.DEFAULT_TIMEOUT

    def __enter__(self) -> App:
        run_sync(self._start())
        return self.app

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        run_sync(self._finish(exc))

    async def __aenter__(self) -> App:
        await run_async(self._start())
        return self.app

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await run_async(self._finish(exc))

    async def _start(self) -> None:
        if self.app._running:
            raise InvalidError(f"{self.app!r} is already running")
        client = Client.from_env()
        timer = _output.Timer()
        got = await client.call("app.create", {"name": self.name, "environment": self.environment,
                                               "state": "detached" if self.detach else "ephemeral",
                                               "description": self.app.description,
                                               "strict_containers": self.app.strict_containers})
        app_id = got["app_id"]
        self.app._app_id = app_id
        self.app._running = True
        _output.step(f"Initialized. App {app_id} in environment '{self.environment}'.")
        self._stop = asyncio.Event()
        # Heartbeats from the start: building images (a first debootstrap, big installs) can outlast
        # APP_HEARTBEAT_TIMEOUT, and an ephemeral app without heartbeats is stopped.
        self._tasks.append(asyncio.get_running_loop().create_task(self._heartbeat(client, app_id)))
        try:
            if _output.is_enabled():
                self._logs_timeout = _log_stream.logs_timeout()
                self._logs = _log_stream.LogStream(client, app_id)
                self._tasks.append(asyncio.get_running_loop().create_task(self._logs.run()))
            function_ids = await create_objects(client, self.app, app_id)
            await client.call("app.publish", {"app_id": app_id, "state": "detached" if self.detach else "ephemeral",
                                              "function_ids": function_ids})
        except BaseException:
            await self._finish(sys.exc_info()[1])
            raise
        _output.step(f"Created objects in {timer}.")

    async def _heartbeat(self, client: Client, app_id: str) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), api.APP_HEARTBEAT_INTERVAL)
            if self._stop.is_set():
                return
            with contextlib.suppress(Exception):
                await client.call("app.heartbeat", {"app_id": app_id})

    async def _finish(self, exc: BaseException | None) -> None:
        app_id = self.app._app_id
        self._stop.set()
        stopped = False
        if app_id is not None and not self.detach:
            reason = "local entrypoint completed" if exc is None else f"{type(exc).__name__}"
            with contextlib.suppress(Exception):
                await Client.from_env().call("app.disconnect", {"app_id": app_id, "reason": reason})
                stopped = True
        logs, self._logs = self._logs, None
        if logs is not None:
            # The barrier: stopping the app stops its containers (their @exit hooks run); the log ends
            # once they have exited and their lines are stored, and we print up to that end.
            if not stopped:  # detached, or the control plane is gone: there is no end to wait for
                await logs.wait_quiet()
            elif not await logs.wait_end(self._logs_timeout):
                _log_stream.warn_incomplete(f"app {app_id}", self._logs_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        for fn in _all_functions(self.app):
            fn._reset_hydration()
        self.app._app_id = None if not self.detach else app_id
        self.app._running = False
        if exc is None:
            _output.step("App completed." if not self.detach else f"App {app_id} keeps running (detached).")


async def _deploy(app: App, name: str, environment: str, tag: str) -> int:
    client = Client.from_env()
    timer = _output.Timer()
    got = await client.call("app.deploy_begin", {"name": name, "environment": environment,
                                                 "strict_containers": app.strict_containers})
    app_id = got["app_id"]
    app._app_id = app_id
    _output.step(f"Created app '{name}' ({app_id}) in environment '{environment}'.")
    function_ids = await create_objects(client, app, app_id)
    published = await client.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": function_ids,
                                                   "tag": tag, "commit_info": _git_commit()})
    version = int(published["version"])
    _output.step(f"App deployed in {timer}! Version v{version}.")
    return version


def deploy_app(app: App, *, name: str | None = None, environment_name: str | None = None, tag: str = "") -> int:
    return run_sync(deploy_app_async(app, name=name, environment_name=environment_name, tag=tag))


async def deploy_app_async(app: App, *, name: str | None = None, environment_name: str | None = None,
                           tag: str = "") -> int:
    name = name or app.name
    if not name:
        raise InvalidError("a deployed app needs a name: App('my-app'), or `skylift deploy --name my-app`")
    return await _deploy(app, name, config.environment_name(environment_name), tag)


async def lookup_app_async(name: str, *, environment_name: str | None, create_if_missing: bool) -> App:
    from .app import App

    client = Client.from_env()
    env = config.environment_name(environment_name)
    if create_if_missing:
        got = await client.call("app.deploy_begin", {"name": name, "environment": env})
    else:
        got = await client.call("app.lookup", {"name": name, "environment": env})
    app = App(name)
    app._app_id = str(got["app_id"])
    return app


def _git_commit() -> str:
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=2).stdout
        return f"{sha}{'-dirty' if dirty.strip() else ''}" if sha else ""
    except (OSError, subprocess.SubprocessError):
        return ""


__all__ = ["AppRun", "build_image", "create_objects", "deploy_app", "deploy_app_async", "lookup_app_async",
           "spawn_background"]
