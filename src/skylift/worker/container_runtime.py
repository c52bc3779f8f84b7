"""The container runtime: each container a `container.Sandbox` (overlayfs + bubblewrap + cgroups).

It implements `runtime.ContainerRuntime` like the process runtime does, from a ContainerSpec made
by `container_task.container_spec` (layers, binds, container paths). Output lines are pumped the
same way; a container's state directory (`spec.scratch/sandbox`: its writable layer, generated
/etc files) is deleted when it exits. `exit_reason` names the memory limit when the kernel
killed the container for exceeding it, so the agent can fail its inputs with that message.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .._protocol import forkserver
from .container import Sandbox, SandboxError, SandboxSpec, cleanup_stale, disk, network
from .container.reap import reap_and_log
from .container_layout import CONTROL_DIR, RUNTIME_DIR, runtime_package_dirs
from .container_limits import DEFAULT_EPHEMERAL_DISK_MB
from .process_runtime import pump_lines
from .runtime import ContainerSpec, ContainerStats, ExecResult, OutputSink, RuntimeNotSupported

TEMPLATE_SPEC_PATH = "/run/skylift-fork/spec.msgpack"  # where a snapshot template finds its spec file
SPARE_DISKS = ".spare-disks"  # in the state root: formatted ephemeral disks waiting for containers


@dataclass
class _Container:
    spec: ContainerSpec
    sandbox: Sandbox
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    stopper: asyncio.Task[int] | None = None


class SandboxRuntime:
    name = "container"

    def __init__(self, state_root: Path | None = None, *, cgroup_group: str = "") -> None:
        """`cgroup_group`: this worker's own cgroup tree (reap.py); what a previous worker of the same
        group left running there is killed first."""
        self._containers: dict[str, _Container] = {}
        self._reasons: dict[str, tuple[str, str] | None] = {}
        self.cgroup_group = cgroup_group
        if cgroup_group:
            reap_and_log(cgroup_group)
        if state_root is not None:
            cleanup_stale(state_root)  # what a crashed worker left: mounts, cgroups, namespaces
            # ephemeral disks formatted ahead, so no start runs mke2fs (disk.py); beside the containers' state
            disk.use_spares(state_root / SPARE_DISKS, (DEFAULT_EPHEMERAL_DISK_MB,))
        # (in the background: it only stats files when the bytecode is there, and no start waits for it)
        threading.Thread(target=precompile_runtime, name="skylift-precompile", daemon=True).start()
        with contextlib.suppress(network.NetworkError, OSError):
            network.pool().prefill()  # the first containers need not make their network namespaces on the spot

    def reap(self) -> None:
        """Kill whatever is still running in this worker's cgroup tree (on the way out)."""
        if self.cgroup_group:
            reap_and_log(self.cgroup_group)
        for container in self._containers.values():  # never waited for: their mounts and disks are still held
            container.sandbox.release()
        self._containers.clear()

    def _get(self, task_id: str) -> _Container:
        try:
            return self._containers[task_id]
        except KeyError:
            raise KeyError(f"no container {task_id} on this worker") from None

    async def prepare(self, spec: ContainerSpec) -> None:
        if not spec.layers:
            raise SandboxError(f"container {spec.task_id} has no image layers (the container runtime needs a "
                               "ContainerSpec from container_task.container_spec)")
        missing = [str(p) for p in spec.layers if not p.is_dir()]
        if missing:
            raise SandboxError(f"image layer(s) missing on this worker: {', '.join(missing)}")

    def _sandbox_spec(self, spec: ContainerSpec) -> SandboxSpec:
        scratch = spec.scratch or Path("/tmp") / "skylift-containers" / spec.task_id
        cpu, memory = spec.resources.get("cpu_limit"), spec.resources.get("memory_limit")
        cpu_request, disk = spec.resources.get("cpu_request"), spec.resources.get("ephemeral_disk_mb")
        return SandboxSpec(
            layers=list(spec.layers), command=list(spec.argv), task_id=spec.task_id, state_dir=scratch / "sandbox",
            env=dict(spec.env), cwd=str(spec.cwd), binds=[(h, c, ro) for h, c, ro in spec.binds],
            cpu=float(cpu) if cpu else None, memory_mb=int(memory) if memory else None,
            cpu_request=float(cpu_request) if cpu_request else None, disk_mb=int(disk) if disk else None,
            block_network=spec.block_network, cgroup_group=self.cgroup_group)

    async def start(self, spec: ContainerSpec, on_output: OutputSink) -> None:
        if spec.task_id in self._containers:
            raise RuntimeError(f"container {spec.task_id} is already running")
        sandbox = await Sandbox.start(self._sandbox_spec(spec))
        container = _Container(spec, sandbox)
        loop = asyncio.get_running_loop()
        container.pumps = [loop.create_task(pump_lines(sandbox.stdout, on_output, spec.task_id, "stdout")),
                           loop.create_task(pump_lines(sandbox.stderr, on_output, spec.task_id, "stderr"))]
        self._containers[spec.task_id] = container
        self._reasons.pop(spec.task_id, None)

    async def wait(self, task_id: str) -> int:
        container = self._get(task_id)
        code = await container.sandbox.wait()
        await asyncio.gather(*container.pumps, return_exceptions=True)
        sandbox = container.sandbox
        reason: tuple[str, str] | None = None
        if sandbox.oom_killed and sandbox.spec.memory_mb is not None:
            reason = ("oom", sandbox.exit_reason(code))
        elif sandbox.command_started is False:
            reason = ("start", sandbox.exit_reason(code))
        self._reasons[task_id] = reason
        self._containers.pop(task_id, None)
        return code

    def exit_reason(self, task_id: str) -> tuple[str, str] | None:
        return self._reasons.pop(task_id, None)

    async def stop(self, task_id: str, *, kill: bool = False, grace: float = 30.0) -> None:
        container = self._containers.get(task_id)
        if container is None or container.sandbox.returncode is not None:
            return
        if kill:
            await container.sandbox.stop(kill=True)
            return
        if container.stopper is None:
            container.stopper = asyncio.ensure_future(container.sandbox.stop(grace=grace))

    async def exec(self, task_id: str, argv: list[str], *, timeout: float = 60.0) -> ExecResult:
        sandbox = self._get(task_id).sandbox
        return await collect(await sandbox.exec(argv, stderr=asyncio.subprocess.STDOUT), timeout)

    # -- memory-snapshot templates (worker/snapshot_runtime.py) --------------------------------


    async def start_template(self, spec: ContainerSpec, directory: Path, argv: list[str], env: dict[str, str],
                             cwd: Path, sock_fd: int, spec_file: Path) -> Sandbox:
        """Start a snapshot template for `spec`'s containers in a sandbox of its own (see `Sandbox`)."""
        sandbox_spec = self._sandbox_spec(spec)
        # nobody's volumes: they are not mounted while the snapshot is taken (each fork gets its own)
        sandbox_spec.binds = [b for b in sandbox_spec.binds if b not in container_binds(spec)]
        (directory / "forks").mkdir(parents=True, exist_ok=True)
        sandbox_spec.task_id = f"template-{directory.name}"
        sandbox_spec.state_dir = directory / "sandbox"
        sandbox_spec.command = argv
        sandbox_spec.env = {**env, forkserver.ENV_TEMPLATE_SPEC: TEMPLATE_SPEC_PATH,
                            forkserver.ENV_TEMPLATE_SANDBOXED: "1"}
        sandbox_spec.cwd = str(cwd)
        sandbox_spec.binds.append((spec_file, TEMPLATE_SPEC_PATH, True))
        sandbox_spec.fork_layers = directory / "forks"
        sandbox_spec.pass_fds = (sock_fd,)
        with contextlib.suppress(network.NetworkError, OSError):
            network.fork_pool().prefill()  # its forks' namespaces, ready by the time it is
        return await Sandbox.start(sandbox_spec)

    async def stats(self, task_id: str) -> ContainerStats:
        s = self._get(task_id).sandbox.stats()
        return ContainerStats(s.pids, s.cpu_seconds, s.memory_bytes)

    async def checkpoint(self, task_id: str, dest: Path) -> None:
        raise RuntimeNotSupported("checkpoint is not supported by the container runtime yet (it needs CRIU >= 4.1)")

    async def restore(self, spec: ContainerSpec, source: Path, on_output: OutputSink) -> None:
        raise RuntimeNotSupported("restore is not supported by the container runtime yet (it needs CRIU >= 4.1)")

    def running(self) -> list[str]:
        return [tid for tid, c in self._containers.items() if c.sandbox.returncode is None]


async def collect(process: asyncio.subprocess.Process, timeout: float) -> ExecResult:
    """The exit code and output of an exec'd process, killed after `timeout` seconds."""
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        out, _ = await process.communicate()
    code = process.returncode if process.returncode is not None else -1
    return ExecResult(code if code >= 0 else 128 - code, out.decode(errors="replace"))


def precompile_runtime() -> None:
    """Bytecode for the packages every container imports from the worker (`runtime_binds`).

    They are bound read-only, so a container can't cache what it compiles: without a `.pyc` beside
    each module (an editable install never imported by the worker itself, say) every container would
    compile the runtime again before its first input.
    """
    import compileall

    for path in runtime_package_dirs().values():
        with contextlib.suppress(OSError):  # a read-only installation has its bytecode from its installer
            compileall.compile_dir(str(path), quiet=2, workers=1)


def container_binds(spec: ContainerSpec) -> list[tuple[Path | str, str, bool]]:
    """The binds of this container alone (volumes, bucket mounts): all but the runtime's and the control plane's."""
    own = (RUNTIME_DIR, CONTROL_DIR)
    return [(h, c, ro) for h, c, ro in spec.binds if not any(c == d or c.startswith(d + "/") for d in own)]
