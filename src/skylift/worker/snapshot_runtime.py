"""Memory snapshots on a worker: containers of `enable_memory_snapshot` functions are forked.

`SnapshotRuntime` wraps the worker's `ContainerRuntime`. A ContainerSpec without a `snapshot`
goes to the wrapped runtime untouched. One with a snapshot is forked from the template of its
snapshot key (`fork_server.TemplateProcess`), which is started the first time the key is seen
and then reused by every container of the pool:

    key = sha256(image, interpreter, function definition, Cls parameters, environment, cwd)
          (the container's own task id, token, GPUs and task-directory paths left out)

* A redeploy changes the definition, so its containers get a new key and a new template; the
  previous template of that function and parameters is retired then (it exits after the old
  containers have drained). A template with no containers for `TEMPLATE_IDLE_SECONDS` retires.
* A template that fails to load the code, or refuses to be forked (threads, sockets, GPU state;
  see `_runtime/template.py`), makes the pool's containers start the ordinary way, with the
  reason in the container's log. A load failure is then reported by the container as usual.
* A forked container is a process of its own session: stop sends SIGTERM (SIGKILL to the whole
  group after the grace period), exec runs with its environment and working directory, stats
  count its session, and its volumes are bound at their paths in a mount namespace of its own
  (or symlinked when the worker isn't root) — as the process runtime does (`process_binds`).

On the container runtime the template runs in a sandbox of its own (`SandboxRuntime.start_template`)
as the root of the forks' user namespace, an unprivileged host uid (`container/userns.py`), and
each child becomes a container of its own: its cgroups, network namespace and writable layer are
prepared here (`container/forked.py`), its namespaces, root filesystem and lock-down are made by
the child itself (`_runtime/fork_container.py`). A stop signals every process of its cgroups; exec
enters the namespaces of its pid 1. Its volumes and bucket mounts are idmapped detached bind
mounts the child attaches in its mount namespace. After each fork (and when a template is ready) the
next container is prepared ahead as a pre-forked spare (`spares.py`) and activated on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from .._protocol import api
from .._runtime.profile import ENV_SPAWNED_AT
from . import criu, fork_request, process_binds
from .fork_server import ForkedChild, Launch, Launched, TemplateProcess, TemplateState, TemplateUnavailable
from .process_runtime import exec_in, pump_lines, session_stats
from .runtime import ContainerRuntime, ContainerSpec, ContainerStats, ExecResult, OutputSink, SnapshotSource
from .spares import Spares

if TYPE_CHECKING:
    from .container.forked import ForkedSandbox

log = logging.getLogger("skylift.worker")

KEY_VERSION = 1
TEMPLATE_IDLE_SECONDS = 600.0
# A preloaded interpreter with no container for this long exits (a new one costs one ordinary start).
PRELOAD_IDLE_SECONDS = 120.0
# Which runtimes fork containers from preloaded interpreters: "all" (the default: the container runtime too,
# where each fork becomes a container as a snapshot's do, in the forks' user namespace), "process" (the process
# runtime only: the container runtime's containers are bubblewrap sandboxes), "0" (none).
ENV_PRELOAD = "SKYLIFT_PRELOAD"
TEMPLATE_TASK_ID = "ta-snapshot-template"
# Per container, so not part of what a snapshot is of.
PER_CONTAINER_ENV = frozenset({api.ENV_TASK_ID, api.ENV_TASK_TOKEN, "CUDA_VISIBLE_DEVICES", ENV_SPAWNED_AT})

Note = Callable[[str, str], None]  # (task_id, text): a system line in the container's log


def _generic(spec: ContainerSpec, value: str, scratch: str = "<scratch>") -> str:
    """`value` with this container's own directory (and id) in it made generic."""
    if spec.scratch is not None:
        value = value.replace(str(spec.scratch), scratch)
    return value.replace(spec.task_id, "<task>")


def snapshot_key(spec: ContainerSpec) -> str:
    """What makes two containers forkable from one template (see the module docstring)."""
    source = spec.snapshot
    assert source is not None
    return _key(spec, [source.image_id, msgpack.packb(source.definition, use_bin_type=True), source.params])


def preload_key(spec: ContainerSpec) -> str:
    """What makes two containers forkable from one preloaded interpreter: the same interpreter, started
    the same way (image, layers, environment, working directory); the function is loaded after the fork."""
    return "preload-" + _key(spec, [[str(p) for p in spec.layers]])


def _key(spec: ContainerSpec, what: list[Any]) -> str:
    env = {k: _generic(spec, v) for k, v in spec.env.items() if k not in PER_CONTAINER_ENV}
    cwd = _generic(spec, str(spec.cwd))
    material = msgpack.packb([KEY_VERSION, *what, str(spec.image_root), list(spec.argv), sorted(env.items()), cwd],
                             use_bin_type=True)
    return hashlib.sha256(material).hexdigest()[:32]


@dataclass(eq=False)
class _Forked:
    spec: ContainerSpec
    child: ForkedChild
    template: TemplateProcess
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    killer: asyncio.TimerHandle | None = None
    sandbox: ForkedSandbox | None = None  # the container runtime's side of it


class SnapshotRuntime:
    def __init__(self, inner: ContainerRuntime, home: Path, *, note: Note | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.home = home
        self._note = note or (lambda task_id, text: None)
        self.templates: dict[str, TemplateProcess] = {}
        self._unusable: dict[str, str] = {}  # key -> why its template can't be used
        self._forked: dict[str, _Forked] = {}
        self._starts: dict[str, dict[str, Any]] = {}  # task id -> how it started (for its profile)
        self._idle_checks: dict[str, asyncio.TimerHandle] = {}
        self._reasons: dict[str, tuple[str, str] | None] = {}  # why a forked container ended
        self.criu: criu.CriuStatus | None = None  # probed once, when the first template starts
        self._criu_probe: asyncio.Task[None] | None = None
        self._preload_starts: set[asyncio.Task[None]] = set()  # preloaded interpreters being started
        self.spares = Spares(self._prepare_sandbox)  # the container runtime's pre-forked spares (spares.py)

    def __getattr__(self, name: str) -> Any:
        # Whatever else the wrapped runtime offers (e.g. exit_reason) is reached through us.
        return getattr(self.inner, name)

    def snapshot_support(self) -> str | None:
        """Why this worker can't fork containers from snapshots (None: it can)."""
        if not hasattr(os, "fork"):
            return "this platform has no fork()"
        if self.inner.name not in ("process", "container"):
            return f"the {self.inner.name} runtime can't fork containers from memory snapshots"
        return None

    def _sandboxed(self) -> bool:
        return self.inner.name == "container"

    def exit_reason(self, task_id: str) -> tuple[str, str] | None:
        if task_id in self._reasons:
            return self._reasons.pop(task_id)
        explain = getattr(self.inner, "exit_reason", None)
        return explain(task_id) if explain is not None else None

    def start_profile(self, task_id: str) -> dict[str, Any]:
        """How a container was started: {how, start_ms, pid?, template_ms?, note?} (once per task)."""
        return self._starts.pop(task_id, {})

    # -- ContainerRuntime ------------------------------------------------------------------------

    async def prepare(self, spec: ContainerSpec) -> None:
        await self.inner.prepare(spec)

    async def start(self, spec: ContainerSpec, on_output: OutputSink) -> None:
        begun = time.perf_counter()
        if spec.snapshot is not None:
            why = self.snapshot_support()
            if why is None:
                try:
                    await self._start_forked(spec, on_output, begun)
                    return
                except TemplateUnavailable as exc:
                    why = str(exc)
            self._note(spec.task_id, f"memory snapshot not used: {why}; starting the container from scratch")
            self._starts[spec.task_id] = {"how": self.name, "note": f"no snapshot: {why}"}
        elif self._preloads(spec) and await self._start_preloaded(spec, on_output, begun):
            return
        spec.env[ENV_SPAWNED_AT] = repr(time.time())
        await self.inner.start(spec, on_output)
        info = self._starts.setdefault(spec.task_id, {"how": self.name})  # a new container of this runtime
        info["start_ms"] = round((time.perf_counter() - begun) * 1000, 3)

    async def wait(self, task_id: str) -> int:
        forked = self._forked.get(task_id)
        if forked is None:
            return await self.inner.wait(task_id)
        code = await forked.child.exit
        if forked.sandbox is not None:
            sandbox = forked.sandbox
            await asyncio.to_thread(sandbox.cleanup)  # what it left behind goes with it
            oom = sandbox.stats().oom_killed and sandbox.memory_mb is not None
            self._reasons[task_id] = ("oom", sandbox.exit_reason(code)) if oom else None
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(forked.child.pid, signal.SIGKILL)  # what it left behind goes with it
        await asyncio.gather(*forked.pumps, return_exceptions=True)
        if forked.killer is not None:
            forked.killer.cancel()
        process_binds.release(task_id)
        self._forked.pop(task_id, None)
        self._starts.pop(task_id, None)
        self._schedule_idle_check(forked.template)
        return code

    async def stop(self, task_id: str, *, kill: bool = False, grace: float = 30.0) -> None:
        forked = self._forked.get(task_id)
        if forked is None:
            await self.inner.stop(task_id, kill=kill, grace=grace)
            return
        if forked.child.exit.done():
            return
        if forked.sandbox is not None:
            signal_all = forked.sandbox.signal_all
            signal_all(signal.SIGKILL if kill else signal.SIGTERM)
            if not kill and forked.killer is None:
                forked.killer = asyncio.get_running_loop().call_later(grace, signal_all, signal.SIGKILL)
            return
        pid = forked.child.pid
        if kill:
            _signal(pid, signal.SIGKILL, group=True)
            return
        _signal(pid, signal.SIGTERM, group=False)
        if forked.killer is None:
            forked.killer = asyncio.get_running_loop().call_later(grace, _signal, pid, signal.SIGKILL, True)

    async def exec(self, task_id: str, argv: list[str], *, timeout: float = 60.0) -> ExecResult:
        forked = self._forked.get(task_id)
        if forked is None:
            return await self.inner.exec(task_id, argv, timeout=timeout)
        if forked.sandbox is not None:
            from .container_runtime import collect
            process = await forked.sandbox.exec(argv, forked.spec.env, str(forked.spec.cwd),
                                                stderr=asyncio.subprocess.STDOUT)
            return await collect(process, timeout)
        return await exec_in(forked.spec, argv, timeout=timeout)

    async def stats(self, task_id: str) -> ContainerStats:
        forked = self._forked.get(task_id)
        if forked is None:
            return await self.inner.stats(task_id)
        if forked.sandbox is not None:
            s = forked.sandbox.stats()
            return ContainerStats(s.pids, s.cpu_seconds, s.memory_bytes)
        return session_stats(forked.child.pid)

    async def checkpoint(self, task_id: str, dest: Path) -> None:
        await self.inner.checkpoint(task_id, dest)

    async def restore(self, spec: ContainerSpec, source: Path, on_output: OutputSink) -> None:
        await self.inner.restore(spec, source, on_output)

    def running(self) -> list[str]:
        forked = [tid for tid, f in self._forked.items() if not f.child.exit.done()]
        return self.inner.running() + forked

    async def close(self) -> None:
        """Retire every template (each exits once the containers it forked have)."""
        for handle in self._idle_checks.values():
            handle.cancel()
        self._idle_checks.clear()
        if self._criu_probe is not None and not self._criu_probe.done():
            self._criu_probe.cancel()
        for task in list(self._preload_starts):
            task.cancel()
        for template in list(self.templates.values()):
            self.spares.drop(template)
            await template.close()
        if self._sandboxed():  # a template's sandbox holds mounts and cgroups: see them released
            await asyncio.gather(*(t.closed(10.0) for t in self.templates.values()))
            await self.spares.close()  # (their spares went with them; their cgroups and disks go now)
        else:  # one with no container left exits at once (a preloaded interpreter, usually): see it gone
            await asyncio.gather(*(t.closed(5.0) for t in self.templates.values() if not t.children))
        self.templates.clear()

    # -- forking -----------------------------------------------------------------------------------

    async def _start_forked(self, spec: ContainerSpec, on_output: OutputSink, begun: float) -> None:
        key = snapshot_key(spec)
        if key in self._unusable:
            raise TemplateUnavailable(self._unusable[key])
        template, created = await self._template(key, spec, on_output)
        try:
            await template.wait_ready()
        except TemplateUnavailable as exc:
            self._unusable[key] = str(exc)
            if self.templates.get(key) is template:
                del self.templates[key]
            raise
        await self._fork_into(spec, template, on_output, begun, created=created)

    async def _fork_into(self, spec: ContainerSpec, template: TemplateProcess, on_output: OutputSink, begun: float,
                         *, created: bool, how: str = "fork") -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        spare = self.spares.take(template, spec) if self._sandboxed() else None
        if spare is not None:  # set up ahead: it only needs its task
            channel, spare.channel = spare.channel, None
            try:
                if channel is None:
                    raise TemplateUnavailable("the spare has no socket")
                spare.sandbox.activate()  # its own CPU share before it runs anything of the task's
                child = template.activate(spare.spare_id, spare.pid, channel, spec.task_id, spec.env, spec.cwd,
                                          out_w, err_w)
            except TemplateUnavailable as exc:
                log.info("spare %s not used: %s", spare.spare_id, exc)
                self.spares.failed(spare)
                spare = None
            except BaseException:
                self.spares.failed(spare)
                for fd in (out_r, err_r, out_w, err_w):
                    os.close(fd)
                raise
            else:
                self.spares.activated(spare)
                spare.sandbox.task_id = spec.task_id
                os.close(out_w)
                os.close(err_w)
                sandbox: ForkedSandbox | None = spare.sandbox
        if spare is None:
            prepare = self._prepare_sandbox if self._sandboxed() else None
            try:
                child, sandbox = await fork_request.fork_now(spec, template, on_output, out_w, err_w, prepare=prepare)
            except BaseException:
                for fd in (out_r, err_r):
                    os.close(fd)
                raise
        if self._sandboxed():
            self.spares.refill(template, spec)  # the next one, while this one starts
        forked = _Forked(spec, child, template, sandbox=sandbox)
        self._forked[spec.task_id] = forked
        loop = asyncio.get_running_loop()
        forked.pumps = [loop.create_task(_pump_fd(out_r, on_output, spec.task_id, "stdout")),
                        loop.create_task(_pump_fd(err_r, on_output, spec.task_id, "stderr"))]
        idle = self._idle_checks.pop(template.key, None)
        if idle is not None:
            idle.cancel()
        info: dict[str, Any] = {"how": how, "start_ms": round((time.perf_counter() - begun) * 1000, 3),
                                "pid": child.pid, "template_pid": template.pid}
        if created:
            info["template_ms"] = round(template.started_ms, 3)
        if spare is not None:
            info["note"] = "from a pre-forked spare"
        self._starts[spec.task_id] = info

    # -- preloaded interpreters -------------------------------------------------------------------

    def _preloads(self, spec: ContainerSpec) -> bool:
        """Whether `spec`'s container may be forked from a preloaded interpreter: on either runtime unless
        SKYLIFT_PRELOAD=0; SKYLIFT_PRELOAD=process keeps the container runtime's containers in bubblewrap
        sandboxes of their own (docs/cold-starts.md, "Preloaded interpreters", for the difference)."""
        setting = os.environ.get(ENV_PRELOAD, "all").lower()
        if setting in ("0", "off", "none"):
            return False
        if setting == "process":
            return self.inner.name == "process" and hasattr(os, "fork")
        return self.snapshot_support() is None

    async def _start_preloaded(self, spec: ContainerSpec, on_output: OutputSink, begun: float) -> bool:
        """Fork `spec`'s container from its preloaded interpreter; False when there is none ready yet.

        The first container of a key starts the ordinary way while its interpreter starts beside it,
        so no container waits for one; the next ones are forked from it.
        """
        key = preload_key(spec)
        if key in self._unusable:
            return False
        template = self.templates.get(key)
        if template is None or not template.usable:
            self._start_preload_template(key, spec, on_output)
            return False
        if template.state is not TemplateState.READY:
            return False
        spec.env[ENV_SPAWNED_AT] = repr(time.time())  # its profile's boot: this request -> the runtime running
        try:
            await self._fork_into(spec, template, on_output, begun, created=False, how="preloaded")
        except TemplateUnavailable as exc:
            log.info("preloaded interpreter %s not used: %s", key, exc)
            spec.env.pop(ENV_SPAWNED_AT, None)
            return False
        return True

    def _start_preload_template(self, key: str, spec: ContainerSpec, on_output: OutputSink) -> None:
        source = SnapshotSource(function_id=key, image_id="", definition=None)
        template = TemplateProcess(key, source.function_id, None, self.home / f"{key}-{secrets.token_hex(4)}",
                                   idle_seconds=PRELOAD_IDLE_SECONDS)
        self.templates[key] = template

        async def start() -> None:
            try:
                await self._start_template(template, spec, source, on_output)
                await template.wait_ready()
            except Exception as exc:  # OSError, TemplateUnavailable: this key's containers start the ordinary way
                self._unusable[key] = f"the preloaded interpreter could not start: {exc}"
                log.info("%s", self._unusable[key])
                if self.templates.get(key) is template:
                    del self.templates[key]
                return
            self._schedule_idle_check(template)
            if self._sandboxed():
                self.spares.refill(template, spec)  # so the pool's next container needn't wait for a fork

        task = asyncio.get_running_loop().create_task(start())
        self._preload_starts.add(task)
        task.add_done_callback(self._preload_starts.discard)

    async def _prepare_sandbox(self, spec: ContainerSpec, template: TemplateProcess,
                               spare_id: str | None = None) -> ForkedSandbox:
        return await fork_request.prepare_sandbox(spec, template, spare_id,
                                                  cgroup_group=getattr(self.inner, "cgroup_group", ""))

    def _launcher(self, spec: ContainerSpec, directory: Path) -> Launch | None:
        if not self._sandboxed():
            return None
        inner: Any = self.inner

        async def launch(argv: list[str], env: dict[str, str], cwd: Path, sock_fd: int, spec_file: Path) -> Launched:
            sandbox: Launched = await inner.start_template(spec, directory, argv, env, cwd, sock_fd, spec_file)
            return sandbox

        return launch

    async def _template(self, key: str, spec: ContainerSpec, on_output: OutputSink) -> tuple[TemplateProcess, bool]:
        template = self.templates.get(key)
        if template is not None and template.usable:
            return template, False
        source = spec.snapshot
        assert source is not None
        # A new version of the function (or image) supersedes the old one's template.
        for other_key, other in list(self.templates.items()):
            if other.function_id == source.function_id and other.params == source.params and other_key != key:
                self.spares.drop(other)
                other.retire()
                del self.templates[other_key]
        # A directory per template process: a retired one removes its own on exit, never its successor's.
        template = TemplateProcess(key, source.function_id, source.params, self.home / f"{key}-{secrets.token_hex(4)}")
        self.templates[key] = template
        if self._criu_probe is None:
            self._criu_probe = asyncio.get_running_loop().create_task(self._probe_criu())
        try:
            await self._start_template(template, spec, source, on_output)
        except Exception as exc:  # OSError, or the container runtime's SandboxError
            del self.templates[key]
            raise TemplateUnavailable(f"the snapshot template could not start: {exc}") from None
        return template, True

    async def _start_template(self, template: TemplateProcess, spec: ContainerSpec, source: SnapshotSource,
                              on_output: OutputSink) -> None:
        scratch = template.directory / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        env = dict(spec.env)
        env.pop(api.ENV_TASK_TOKEN, None)
        env[api.ENV_TASK_ID] = TEMPLATE_TASK_ID  # "in a container" for is_local(); nobody's container
        env["CUDA_VISIBLE_DEVICES"] = ""  # GPUs are invisible while the snapshot is taken (as on Modal)
        for name, value in list(env.items()):
            env[name] = _generic(spec, value, str(scratch)).replace("<task>", TEMPLATE_TASK_ID)
        cwd = Path(_generic(spec, str(spec.cwd), str(scratch)))
        await template.start(list(spec.argv), env, cwd, source, on_output, owner=spec.task_id,
                             launch=self._launcher(spec, template.directory))

    async def _probe_criu(self) -> None:
        self.criu = await asyncio.to_thread(criu.detect)
        log.info("%s", criu.describe(self.criu))

    def _schedule_idle_check(self, template: TemplateProcess) -> None:
        if template.children or self.templates.get(template.key) is not template:
            return
        old = self._idle_checks.pop(template.key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._idle_checks[template.key] = loop.call_later(template.idle_seconds, self._retire_if_idle, template)

    def _retire_if_idle(self, template: TemplateProcess) -> None:
        self._idle_checks.pop(template.key, None)
        if template.children or time.monotonic() - template.last_used < template.idle_seconds * 0.9:
            return
        if self.templates.get(template.key) is template:
            del self.templates[template.key]
        self.spares.drop(template)
        template.retire()


def _signal(pid: int, signum: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signum)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


async def _pump_fd(fd: int, emit: OutputSink, task_id: str, stream: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                os.fdopen(fd, "rb", buffering=0))
    try:
        await pump_lines(reader, emit, task_id, stream)
    finally:
        transport.close()
