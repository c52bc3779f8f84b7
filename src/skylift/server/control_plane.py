"""`ControlPlane`: the whole control plane in one object, runnable in-process.

    cp = ControlPlane(home)          # opens home/state.db, creates home/token once
    await cp.start()                 # recovers spawned calls, listens (TCP + unix socket)
    ...                              # cp.url, cp.unix_url, cp.token
    await cp.stop()

`python -m skylift.server` wraps it with signal handling and the embedded worker; tests use it
directly on a temp dir and talk to it with real `RpcClient`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import _private_home
from .._protocol import api
from .._protocol.rpc import Address
from .._protocol.rpc_server import RpcServer, Session
from .access import WORKER, Principal, authorize
from .access_facts import PlatformFacts
from .api.app_api import AppApi
from .api.call_api import CallApi
from .api.container_api import ContainerApi
from .api.introspection_api import IntrospectionApi
from .api.logs import LogHub
from .api.sandbox_api import SandboxApi
from .api.task_api import TaskApi
from .api.worker_api import WorkerApi
from .auth import Authenticator, Routes, load_or_create_token
from .clock import Clock, RealClock
from .execution.calls import Calls
from .execution.catalog import Catalog
from .execution.dispatch import Dispatcher
from .execution.images import Images
from .execution.queues import Pools
from .execution.recovery import recover_calls, recover_tasks
from .execution.scaler import Scaler
from .execution.sweeper import Sweeper
from .execution.tasks import Tasks
from .execution.workers import Workers
from .http.gateway import Gateway, GatewayConfig
from .http.proxy_auth import ProxyTokens
from .http.web_api import WebApi
from .http.web_store import SqliteWebStore
from .scheduler import Scheduler
from .settings import Settings
from .sqlite_store import SqliteStore
from .storage.blob_api import BlobApi
from .storage.blobs import BlobStore, FileBlobStore
from .storage.service import Storage
from .store import Database, Store

log = logging.getLogger("skylift.server")

# sun_path is 108 bytes on Linux (104 on macOS); longer homes get TCP only.
MAX_SOCKET_PATH = 100


def server_version() -> str:
    try:
        return metadata.version("skylift")
    except metadata.PackageNotFoundError:
        return "0.1.0"


class ControlPlane:
    def __init__(self, home: Path | str, *, host: str = "127.0.0.1", port: int = 0, settings: Settings | None = None,
                 clock: Clock | None = None, store: Store | None = None, blobs: BlobStore | None = None) -> None:
        self.home = Path(home).expanduser().resolve()
        _private_home.make_private(self.home)  # 0700, its state files 0600 (tightened if made by an older version)
        self.host = host
        self.port = port
        self.settings = settings or Settings()
        self.clock: Clock = clock or RealClock()
        self.version = server_version()
        self.server_id = secrets.token_hex(8)
        self.token = load_or_create_token(self.home)
        self.worker_token = load_or_create_token(self.home, "worker_token")  # workers only (docs/security.md)
        self.url = ""
        self.unix_url = ""
        self.started_at = 0.0
        self.shutdown_requested = asyncio.Event()

        if store is None:
            _private_home.private_file(self.home / "state.db")  # SQLite gives its WAL and shm the same mode
        self.db = Database(store if store is not None else SqliteStore(self.home / "state.db"))
        self.blobs: BlobStore = blobs if blobs is not None else FileBlobStore(self.home / "blobs")
        self.catalog = Catalog(self.db)
        self.calls = Calls()
        self.tasks = Tasks()
        self.workers = Workers()
        self.scaler = Scaler(self)
        self.pools = Pools(self.scaler.wake)
        self.logs = LogHub(self)
        self.images = Images(self)
        self.dispatcher = Dispatcher(db=self.db, clock=self.clock, settings=self.settings, calls=self.calls,
                                     pools=self.pools, tasks=self.tasks, workers=self.workers,
                                     system_log=self.logs.system, wake_scaler=self.scaler.wake)
        self.call_api = CallApi(self)
        self.container_api = ContainerApi(self)
        self.worker_api = WorkerApi(self)
        self.app_api = AppApi(self)
        self.task_api = TaskApi(self)
        self.sandbox_api = SandboxApi(self)
        self.introspection_api = IntrospectionApi(self)
        self.sweeper = Sweeper(self)
        self.storage = Storage(self.home, self.db, self.blobs)
        # Web endpoints and schedules (docs/web.md): their own small store in the same state.db.
        self.web_store = SqliteWebStore(self.home / "state.db")
        self.proxy_tokens = ProxyTokens(self.db, self.web_store)
        self.gateway = Gateway(self, self.proxy_tokens, GatewayConfig.from_env(host))
        self.scheduler = Scheduler(self, self.web_store)
        self.web_url = ""
        self._rpc: RpcServer | None = None
        self.facts = PlatformFacts(self)
        self._loops: list[asyncio.Task[None]] = []
        self._stopped = False

    # ---- lifecycle ----------------------------------------------------------------------------

    def routes(self) -> Routes:
        routes: Routes = {}
        for part in (self.call_api, self.container_api, self.worker_api, self.app_api, self.task_api, self.logs,
                     self.images, BlobApi(self.blobs), self.storage, self.sandbox_api, self.introspection_api):
            routes.update(part.routes())
        for web_part in (WebApi(self.gateway), self.proxy_tokens, self.scheduler):
            routes.update(web_part.routes())
        routes["server.status"] = self._status
        routes["server.shutdown"] = self._shutdown
        return routes

    async def start(self) -> None:
        self.started_at = time.time()
        self.catalog.load(self.clock.now())
        for function in self.catalog.functions.values():
            self.scaler.ensure_warm(function)
        self.images.preload({f.image_id for f in self.catalog.functions.values() if f.image_id})
        recover_tasks(self)
        recover_calls(self)
        self.storage.start()
        self.proxy_tokens.load()
        self.scheduler.load()
        authenticate = Authenticator(self.token, self.tasks, self.version, self.server_id, self.worker_token)
        s = self.settings
        # No role sets beside the handlers: `authorize` (access.RULES) is the one check.
        handlers = {method: (handler, frozenset[str]()) for method, handler in self.routes().items()}
        self._rpc = RpcServer(authenticate, handlers, self._on_disconnect, authorize=self._authorize,
                              hello_timeout=s.hello_timeout, max_connections=s.rpc_max_connections,
                              max_unauthenticated=s.rpc_max_unauthenticated)
        self.url = str(await self._rpc.listen(Address("tcp", host=self.host, port=self.port)))
        sock = self.home / "server.sock"
        # The socket itself lives alone in socket/ (server.sock links to it): the container runtime
        # binds that directory into containers, which must not see the rest of the home (the token).
        real = self.home / "socket" / "server.sock"
        if len(str(real)) <= MAX_SOCKET_PATH:
            real.parent.mkdir(mode=0o700, exist_ok=True)
            await self._rpc.listen(Address("unix", path=str(real)))
            link = self.home / f".server.sock.{os.getpid()}"
            link.unlink(missing_ok=True)
            link.symlink_to("socket/server.sock")
            os.replace(link, sock)
            self.unix_url = f"unix://{sock}"
        else:
            log.warning("%s is too long for a unix socket; local clients and workers will use %s", sock, self.url)
            self.unix_url = self.url
        self.web_url = await self.gateway.start(self.home / "web_port")
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self.scaler.run(), name="skylift-scaler"),
                       loop.create_task(self.sweeper.run(), name="skylift-sweeper"),
                       loop.create_task(self.scheduler.run(), name="skylift-scheduler"),
                       loop.create_task(self.sandbox_api.watch(), name="skylift-sandboxes")]
        self._write_info()
        log.info("skylift control plane %s listening on %s and %s", self.version, self.url, self.unix_url)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._rpc is not None:
            await self._rpc.close()
        await self.gateway.stop()
        await self.dispatcher.drain_background()
        self.db.close()
        self.web_store.close()
        self.storage.close()
        self._remove_info()
        log.info("skylift control plane stopped")

    async def __aenter__(self) -> ControlPlane:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _write_info(self) -> None:
        info = {"url": self.url, "unix_url": self.unix_url, "pid": os.getpid(), "version": self.version,
                "started_at": self.started_at, "web_url": self.web_url}
        _private_home.write_private(self.home / "server.json", json.dumps(info, indent=2) + "\n")

    def _remove_info(self) -> None:
        path = self.home / "server.json"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()

    # ---- connections --------------------------------------------------------------------------

    def _authorize(self, session: Session, method: str, params: dict[str, Any]) -> None:
        """The one check before every handler: server/access.py's RULES for the session's principal."""
        principal = session.principal
        if isinstance(principal, Principal) and principal.kind == WORKER and principal.worker_id != session.identity:
            principal = session.principal = dataclasses.replace(principal, worker_id=session.identity)  # registered
        authorize(principal, method, params, self.facts)

    async def _on_disconnect(self, session: Session) -> None:
        now = self.clock.now()
        for call in list(session.info.get("calls", ())):
            if call.owner is session and not call.finished:
                call.orphaned_since = now
        if session.role == api.ROLE_CONTAINER:
            self.container_api.on_disconnect(session)
        elif session.role == api.ROLE_WORKER:
            self.worker_api.on_disconnect(session)
        await self.storage.on_disconnect(session)

    async def _status(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": self.version, "pid": os.getpid(), "started_at": self.started_at, "url": self.url,
            "workers": [w.info() for w in self.workers.all()],
            "apps_running": sum(1 for a in self.catalog.apps.values() if a.running), "web_url": self.web_url,
        }

    async def _shutdown(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        log.info("shutdown requested over RPC")
        # Set after this answer is on its way, so the caller hears back before we close.
        asyncio.get_running_loop().call_soon(self.shutdown_requested.set)
        return {}
