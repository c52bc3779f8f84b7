"""Pre-forked spares: the next forked container of a template, made ahead (docs/cold-starts.md).

On the container runtime a fork becomes a container of its own: cgroups, a network namespace, its
ephemeral disk and the fds for them on the worker's side; in the child, its namespaces, root
filesystem, masks and lock-down, and three forks of a Python process. None of that depends on the
task, so after a template forks a container (or becomes ready) the worker prepares one spare for it:

    spares.refill(template, spec)           # in the background: the sandbox, then the template's "spare"
    spare = spares.take(template, spec)     # a ready spare of the same shape (limits, network, volumes), or None
    child = template.activate(spare.spare_id, spare.pid, spare.channel, task_id, env, cwd, stdout, stderr)
    spares.activated(spare)                 # its sandbox is the container's now

A spare is bounded (one per template), holds the template's copy-on-write memory and its own sandbox,
and runs nothing of the user's before its activation (no hook, no input: it waits in the runtime
process, locked down). The activation brings what is the task's own: its environment (id, token),
working directory, stdout and stderr; the child then re-seeds its randomness and starts as any fork.
A spare whose shape doesn't match the request is dropped; one whose template retires or dies goes
with it, and its sandbox (cgroups, network namespace, disk) is released once it has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fork_server import TemplateProcess, TemplateState, TemplateUnavailable
from .runtime import ContainerSpec

if TYPE_CHECKING:
    from .container.forked import ForkedSandbox

log = logging.getLogger("skylift.worker")

# (spec, template, spare id) -> its sandbox, prepared as for a container of `spec`
PrepareSandbox = Callable[[ContainerSpec, TemplateProcess, str], Awaitable["ForkedSandbox"]]


def shape(spec: ContainerSpec) -> tuple[Any, ...]:
    """What a spare's sandbox was made for: two specs of one shape can use each other's spare."""
    from .container_runtime import container_binds

    r = spec.resources
    binds = tuple((str(h), c, bool(ro)) for h, c, ro in container_binds(spec))
    return (r.get("cpu_limit"), r.get("memory_limit"), r.get("cpu_request"), r.get("ephemeral_disk_mb"),
            bool(spec.block_network), binds)


@dataclass(eq=False)
class Spare:
    spare_id: str
    template: TemplateProcess
    sandbox: ForkedSandbox
    shape: tuple[Any, ...]
    pid: int = 0
    channel: socket.socket | None = None  # what it waits on: the activation goes to it directly
    taken: bool = False
    watcher: asyncio.Task[None] | None = None


class Spares:
    """At most one spare per template (see the module docstring)."""

    def __init__(self, prepare_sandbox: PrepareSandbox) -> None:
        self._prepare = prepare_sandbox
        self._ready: dict[int, Spare] = {}  # id(template) -> its spare
        self._making: dict[int, asyncio.Task[None]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._broken: set[str] = set()  # template keys whose spare failed: they fork the ordinary way

    def refill(self, template: TemplateProcess, spec: ContainerSpec) -> None:
        """Make `template` a spare for containers shaped like `spec`, unless it has one (or one is coming)."""
        slot = id(template)
        if template.state is not TemplateState.READY or slot in self._ready or slot in self._making \
                or template.key in self._broken:
            return
        task = asyncio.get_running_loop().create_task(self._make(template, spec))
        self._making[slot] = task
        task.add_done_callback(lambda _: self._making.pop(slot, None))

    def take(self, template: TemplateProcess, spec: ContainerSpec) -> Spare | None:
        """`template`'s spare when it is ready and shaped for `spec` (one of another shape is dropped)."""
        spare = self._ready.pop(id(template), None)
        if spare is None:
            return None
        if spare.shape != shape(spec) or template.state is not TemplateState.READY:
            self._drop(spare)
            return None
        spare.taken = True
        return spare

    def activated(self, spare: Spare) -> None:
        """The spare is a container now: its end and its sandbox are the container's."""
        if spare.watcher is not None:
            spare.watcher.cancel()

    def failed(self, spare: Spare) -> None:
        """Its activation failed (the template killed it): release its sandbox once it is gone."""
        spare.taken = False
        self._drop(spare)

    def has_spare(self, template: TemplateProcess) -> bool:
        return id(template) in self._ready

    def drop(self, template: TemplateProcess) -> None:
        """`template`'s spare, if any, exits (its template retires, or is gone)."""
        spare = self._ready.pop(id(template), None)
        if spare is not None:
            self._drop(spare)

    async def close(self, timeout: float = 10.0) -> None:
        """Drop every spare and wait until their sandboxes are released."""
        for task in list(self._making.values()):
            task.cancel()
        await asyncio.gather(*self._making.values(), return_exceptions=True)
        for spare in list(self._ready.values()):
            self._drop(spare)
        self._ready.clear()
        if self._watchers:
            await asyncio.wait(list(self._watchers), timeout=timeout)
        for task in list(self._watchers):
            task.cancel()

    # -- making and releasing ------------------------------------------------------------------------

    async def _make(self, template: TemplateProcess, spec: ContainerSpec) -> None:
        spare_id = "sp-" + secrets.token_hex(8)
        try:
            sandbox = await self._prepare(spec, template, spare_id)
        except Exception as exc:  # TemplateUnavailable: no cgroups or network now; the next fork tries again
            log.info("no spare for template %s: %s", template.key, exc)
            return
        container, fds = sandbox.request()
        try:
            pid, channel = await template.spare(spare_id, container, fds)
        except BaseException as exc:
            await asyncio.shield(asyncio.to_thread(sandbox.cleanup))
            if isinstance(exc, TemplateUnavailable) and template.state is TemplateState.READY:
                self._broken.add(template.key)
                log.warning("template %s can't make spares (%s); its containers are forked on request", template.key,
                            exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            sandbox.close_fds()
        spare = Spare(spare_id, template, sandbox, shape(spec), pid, channel)
        spare.watcher = asyncio.get_running_loop().create_task(self._watch(spare))
        self._watchers.add(spare.watcher)
        spare.watcher.add_done_callback(self._watchers.discard)
        if template.state is TemplateState.READY:
            self._ready[id(template)] = spare
        else:
            self._drop(spare)

    def _drop(self, spare: Spare) -> None:
        if self._ready.get(id(spare.template)) is spare:
            del self._ready[id(spare.template)]
        if spare.channel is not None:  # (EOF: it exits even if the template's kill doesn't reach it)
            spare.channel.close()
            spare.channel = None
        spare.template.drop_spare(spare.spare_id)

    async def _watch(self, spare: Spare) -> None:
        """Until the spare is activated: once it has exited (dropped, failed, its template gone), free its sandbox."""
        ended = spare.template.spare_exits.get(spare.spare_id)
        code = await asyncio.shield(ended) if ended is not None else 0
        if spare.taken:
            return
        if self._ready.get(id(spare.template)) is spare:
            del self._ready[id(spare.template)]
        if spare.channel is not None:
            spare.channel.close()
            spare.channel = None
        if code not in (0, 137):
            log.info("spare %s of template %s exited with code %s", spare.spare_id, spare.template.key, code)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(spare.sandbox.cleanup)


def spare_state_dir(spec: ContainerSpec, spare_id: str) -> Path | None:
    """Beside the task's own state (so a crashed worker's cleanup finds its disk), named after the spare."""
    return spec.scratch.parent / spare_id / "sandbox" if spec.scratch is not None else None
