"""The worker's side of one forked container: its sandbox (prepared on request, or ahead for a spare) and the
fork request (docs/cold-starts.md). `SnapshotRuntime` decides which template forks it; this does the forking.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from . import process_binds
from .fork_server import ForkedChild, TemplateProcess, TemplateUnavailable
from .runtime import ContainerSpec, OutputSink
from .spares import spare_state_dir

if TYPE_CHECKING:
    from .container.forked import ForkedSandbox

# (spec, template, spare id or None) -> its sandbox
PrepareSandbox = Callable[[ContainerSpec, TemplateProcess, "str | None"], Awaitable["ForkedSandbox"]]


async def fork_now(spec: ContainerSpec, template: TemplateProcess, on_output: OutputSink, out_w: int, err_w: int,
                   *, prepare: PrepareSandbox | None) -> tuple[ForkedChild, ForkedSandbox | None]:
    """Fork and set up a container on request (no spare); closes `out_w` and `err_w`. `prepare`: the container
    runtime's side of it (None on the process runtime)."""
    try:
        sandbox = await prepare(spec, template, None) if prepare is not None else None
    except BaseException:
        os.close(out_w)
        os.close(err_w)
        raise
    binds = [] if sandbox is not None else volume_binds(spec, on_output)
    container, extra_fds = sandbox.request() if sandbox is not None else (None, [])
    try:
        child = await template.fork(spec.task_id, spec.env, spec.cwd, out_w, err_w, binds=binds,
                                    container=container, extra_fds=extra_fds)
    except BaseException:
        process_binds.release(spec.task_id)
        if sandbox is not None:
            await asyncio.to_thread(sandbox.cleanup)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
        if sandbox is not None:
            sandbox.close_fds()
    return child, sandbox


async def prepare_sandbox(spec: ContainerSpec, template: TemplateProcess, spare_id: str | None = None, *,
                          cgroup_group: str = "") -> ForkedSandbox:
    """The worker's side of a forked container of `spec` (for a spare: named `spare_id`, with its own
    state directory beside the tasks'); `cgroup_group`: the worker's own cgroup tree."""
    from .container.forked import ForkedSandbox
    from .container_runtime import container_binds

    name = spare_id or spec.task_id
    cpu, memory = spec.resources.get("cpu_limit"), spec.resources.get("memory_limit")
    cpu_request, disk = spec.resources.get("cpu_request"), spec.resources.get("ephemeral_disk_mb")
    binds = [(str(h), c, ro) for h, c, ro in container_binds(spec)]
    if spare_id is not None:
        state_dir = spare_state_dir(spec, spare_id)
    else:
        state_dir = spec.scratch / "sandbox" if spec.scratch is not None else None
    try:
        sandbox = await asyncio.to_thread(
            ForkedSandbox.prepare, name, template.directory / "forks" / name,
            cpu=float(cpu) if cpu else None, memory_mb=int(memory) if memory else None,
            block_network=spec.block_network, binds=binds,
            cpu_request=float(cpu_request) if cpu_request else None, disk_mb=int(disk) if disk else None,
            state_dir=state_dir, cgroup_group=cgroup_group, spare=spare_id is not None)
    except Exception as exc:
        raise TemplateUnavailable(f"the forked container's cgroups or network could not be set up: {exc}") from None
    if spare_id is not None and state_dir is not None:
        sandbox.own_dir = state_dir.parent
    return sandbox


def volume_binds(spec: ContainerSpec, on_output: OutputSink) -> list[tuple[str, str, bool]]:
    """The binds the forked child makes itself (root), else none: process_binds symlinks them here."""
    needed = [(str(h), c, ro) for h, c, ro in spec.binds if os.path.realpath(h) != os.path.realpath(c)]
    if not needed:
        return []
    if process_binds.namespace_available():
        return needed
    _, warnings = process_binds.wrap(spec)
    for warning in warnings:
        on_output(spec.task_id, "stderr", f"skylift: {warning}")
    return []
