"""`modal.Sandbox`: a container of an image running a command, driven from the program.

Example (Modal's documented example, unchanged):
    >>> app = modal.App.lookup("sandboxes", create_if_missing=True)   # doctest: +SKIP
    >>> sb = modal.Sandbox.create("bash", "-c", "echo hi; cat", app=app)
    >>> sb.stdin.write(b"x"); sb.stdin.write_eof(); sb.stdin.drain()
    >>> sb.stdout.read()
    'hi\\nx'
    >>> sb.wait(); sb.returncode
    0

A sandbox runs on the worker's container runtime with a function's isolation and limits (or
the process runtime where that is what the platform runs); its secrets, volumes, `cpu`/`memory`/
`gpu`, `block_network` and `timeout` apply as for functions. What is not there yet (tunnels,
the filesystem API, snapshots, probes, pty) raises at `create` with the name of the argument:
docs/sandboxes.md.
"""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator, Sequence
from typing import Any

from . import _attachments, config
from ._aio import blocking, iterating
from ._client import Client, spawn_background
from ._context import is_local
from ._protocol import api
from ._resources import validate_resources, validate_timeout
from .container_process import ContainerProcess
from .exception import InvalidError, SandboxTerminatedError, SandboxTimeoutError
from .io_streams import StreamReader, StreamWriter, print_stream
from .stream_type import StreamType

_NOT_YET = "skylift does not support {name}= for sandboxes yet (docs/sandboxes.md lists what is missing)"


def _env(env: dict[str, str | None] | None, owner: str) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise InvalidError(f"{owner}: env= must be a dict of str to str")
    return {str(k): str(v) for k, v in env.items() if v is not None}


def _workdir(workdir: str | None) -> str | None:
    if workdir is not None and not posixpath.isabs(workdir):
        raise InvalidError(f"workdir={workdir!r} must be an absolute path")
    return workdir


def _mode(stream: StreamType, name: str) -> str:
    if not isinstance(stream, StreamType):
        raise InvalidError(f"{name}= must be a modal.stream_type.StreamType, got {stream!r}")
    return "devnull" if stream is StreamType.DEVNULL else "pipe"


def _refuse(**given: Any) -> None:
    for name, value in given.items():
        if value:
            raise InvalidError(_NOT_YET.format(name=name))


async def _app_id(app: Any) -> str:
    app_id = getattr(app, "app_id", None) if app is not None else None
    if app_id:
        return str(app_id)
    if not is_local():
        return ""  # inside a function's container: its own app (the control plane knows which), as in Modal
    if app is None:
        raise InvalidError("Sandbox.create needs app=: pass a running App (`with app.run():`) or "
                           "modal.App.lookup('name', create_if_missing=True)")
    raise InvalidError(f"the App {getattr(app, 'name', None) or ''!r} is not running: create sandboxes inside "
                       "`with app.run():`, or use modal.App.lookup('name', create_if_missing=True)")


class Sandbox:
    """A running (or ended) sandbox; get one with `create`, `from_id`, `from_name` or `list`."""

    def __init__(self, client: Client, sandbox_id: str, info: dict[str, Any] | None = None) -> None:
        self._client = client
        self._sandbox_id = sandbox_id
        self._status = "running"
        self._returncode: int | None = None
        self._tags: dict[str, str] = {}
        if info is not None:
            self._update(info)
        self._stdout: StreamReader[str] = StreamReader(client, sandbox_id, sandbox_id, "stdout", by_line=True)
        self._stderr: StreamReader[str] = StreamReader(client, sandbox_id, sandbox_id, "stderr", by_line=True)
        self._stdin = StreamWriter(client, sandbox_id, sandbox_id)

    def __repr__(self) -> str:
        return f"Sandbox({self._sandbox_id})"

    def _update(self, info: dict[str, Any]) -> None:
        self._status = str(info.get("status") or "running")
        code = info.get("returncode")
        self._returncode = int(code) if code is not None else None
        self._tags = dict(info.get("tags") or {})

    @property
    def object_id(self) -> str:
        return self._sandbox_id

    @property
    def stdout(self) -> StreamReader[str]:
        """The command's stdout, line by line when iterated."""
        return self._stdout

    @property
    def stderr(self) -> StreamReader[str]:
        """The command's stderr."""
        return self._stderr

    @property
    def stdin(self) -> StreamWriter:
        """The command's stdin."""
        return self._stdin

    @property
    def returncode(self) -> int | None:
        """The exit code once the sandbox has ended (124: timed out, 137: terminated), else None."""
        return self._returncode if self._status != "running" else None

    # ---- create and find -------------------------------------------------------------------------

    @blocking
    async def create(
        _cls: Any,
        *args: str,
        app: Any = None,
        name: str | None = None,
        tags: dict[str, str] | None = None,
        image: Any = None,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        network_file_systems: dict[Any, Any] | None = None,
        timeout: int | None = 300,
        idle_timeout: int | None = None,
        workdir: str | None = None,
        gpu: str | None = None,
        cloud: str | None = None,
        region: str | Sequence[str] | None = None,
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        runtime: str | None = None,
        block_network: bool = False,
        outbound_cidr_allowlist: Sequence[str] | None = None,
        outbound_domain_allowlist: Sequence[str] | None = None,
        _experimental_outbound_policy: Any = None,
        inbound_cidr_allowlist: Sequence[str] | None = None,
        volumes: dict[Any, Any] | None = None,
        pty: bool = False,
        encrypted_ports: Sequence[int] = (),
        h2_ports: Sequence[int] = (),
        unencrypted_ports: Sequence[int] = (),
        custom_domain: str | None = None,
        proxy: Any = None,
        include_oidc_identity_token: bool = False,
        readiness_probe: Any = None,
        verbose: bool = False,
        experimental_options: dict[str, Any] | None = None,
        _experimental_enable_snapshot: bool = False,
        _experimental_persistent: bool = False,
        client: Client | None = None,
        environment_name: str | None = None,
        pty_info: Any = None,
        cidr_allowlist: Sequence[str] | None = None,
    ) -> Sandbox:
        """Start a sandbox running `args` (with none, it idles until terminated or timed out)."""
        from ._runner import _upload, build_image
        from .image import Image

        if not all(isinstance(a, str) for a in args):
            raise InvalidError("All entrypoint arguments must be strings")
        _refuse(network_file_systems=network_file_systems, outbound_cidr_allowlist=outbound_cidr_allowlist,
                cidr_allowlist=cidr_allowlist, outbound_domain_allowlist=outbound_domain_allowlist,
                _experimental_outbound_policy=_experimental_outbound_policy,
                inbound_cidr_allowlist=inbound_cidr_allowlist, pty=pty or pty_info, encrypted_ports=encrypted_ports,
                h2_ports=h2_ports, unencrypted_ports=unencrypted_ports, custom_domain=custom_domain, proxy=proxy,
                include_oidc_identity_token=include_oidc_identity_token, readiness_probe=readiness_probe,
                _experimental_enable_snapshot=_experimental_enable_snapshot,
                _experimental_persistent=_experimental_persistent)
        owner = "Sandbox.create"
        app_id = await _app_id(app)
        client = client or Client.from_env()
        secret_list, volume_map = _attachments.check(list(secrets or []), volumes or {}, owner)
        image = image or getattr(app, "_image", None) or Image.debian_slim()
        image_id = await build_image(client, image, label="sandbox")
        await _upload(client, image._local_files())
        definition: dict[str, Any] = {
            "tag": "sandbox", "image_id": image_id, "mounts": image._start_mounts(),
            "resources": validate_resources(cpu=cpu, memory=memory, gpu=gpu),
            "block_network": bool(block_network), "env": _env(env, owner), "region": region, "cloud": cloud,
            "experimental_options": dict(experimental_options or {}),
        }
        definition.update(await _attachments.resolve_objects(secret_list, volume_map))
        params: dict[str, Any] = {
            "app_id": app_id or None, "definition": definition, "cmd": list(args), "name": name,
            "tags": dict(tags or {}), "timeout": validate_timeout(timeout if timeout is not None else 300),
            "workdir": _workdir(workdir)}
        if idle_timeout is not None:
            params["idle_timeout"] = validate_timeout(idle_timeout, name="idle_timeout")
        got = await client.call("sandbox.create", params, retry=False)
        return Sandbox(client, str(got["sandbox_id"]), {"tags": tags or {}})

    @blocking
    async def from_id(_cls: Any, sandbox_id: str, client: Client | None = None) -> Sandbox:
        """The sandbox with this id (running or recently ended)."""
        client = client or Client.from_env()
        info = await client.call("sandbox.get", {"sandbox_id": sandbox_id})
        return Sandbox(client, sandbox_id, info)

    @blocking
    async def from_name(_cls: Any, app_name: str, name: str, *, environment_name: str | None = None,
                        include_terminated: bool = False, client: Client | None = None) -> Sandbox:
        """The running sandbox created with `name=` in the deployed (or running) app `app_name`."""
        client = client or Client.from_env()
        info = await client.call("sandbox.from_name", {"app_name": app_name, "name": name,
                                                       "environment": config.environment_name(environment_name)})
        return Sandbox(client, str(info["sandbox_id"]), info)

    @iterating
    async def list(_cls: Any, *, app_id: str | None = None, tags: dict[str, str] | None = None,
                   client: Client | None = None, environment_name: str | None = None) -> AsyncIterator[Sandbox]:
        """The running sandboxes of the environment (or of `app_id`) that have at least `tags`, newest first."""
        client = client or Client.from_env()
        params: dict[str, Any] = {"environment": config.environment_name(environment_name), "tags": dict(tags or {})}
        if app_id:
            params["app_id"] = app_id
        got = await client.call("sandbox.list", params)
        for info in got.get("sandboxes") or []:
            yield Sandbox(client, str(info["sandbox_id"]), info)

    # ---- tags ------------------------------------------------------------------------------------

    @blocking
    async def set_tags(self, tags: dict[str, str], *, client: Client | None = None) -> None:
        """Replace the sandbox's tags (what `Sandbox.list(tags=...)` matches)."""
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise InvalidError("tags must be a dict of str to str")
        await self._client.call("sandbox.set_tags", {"sandbox_id": self._sandbox_id, "tags": dict(tags)})
        self._tags = dict(tags)

    @blocking
    async def get_tags(self) -> dict[str, str]:
        """The sandbox's tags."""
        info = await self._client.call("sandbox.get", {"sandbox_id": self._sandbox_id})
        self._update(info)
        return dict(self._tags)

    # ---- life ------------------------------------------------------------------------------------

    async def _wait_once(self, timeout: float) -> bool:
        got = await self._client.call("sandbox.wait", {"sandbox_id": self._sandbox_id, "timeout": timeout})
        self._status = str(got["status"])
        code = got.get("returncode")
        self._returncode = int(code) if code is not None else None
        return self._status != "running"

    @blocking
    async def wait(self, raise_on_termination: bool = True) -> None:
        """Wait for the sandbox to end. Raises SandboxTimeoutError past its timeout, and
        SandboxTerminatedError if it was terminated (unless raise_on_termination=False)."""
        while not await self._wait_once(api.MAX_POLL_SECONDS):
            pass
        if self._status == "timeout":
            raise SandboxTimeoutError(f"sandbox {self._sandbox_id} timed out")
        if self._status == "terminated" and raise_on_termination:
            raise SandboxTerminatedError(f"sandbox {self._sandbox_id} was terminated")

    @blocking
    async def poll(self) -> int | None:
        """The return code if the sandbox has ended, else None."""
        await self._wait_once(0.0)
        return self.returncode

    @blocking
    async def terminate(self, *, wait: bool = False) -> int | None:
        """Stop the sandbox now (its result: terminated, return code 137)."""
        got = await self._client.call("sandbox.terminate", {"sandbox_id": self._sandbox_id})
        self._status = str(got.get("status") or "terminated")
        code = got.get("returncode")
        self._returncode = int(code) if code is not None else None
        return self._returncode if wait else None

    @blocking
    async def detach(self) -> None:
        """Let go of the sandbox here; it keeps running (nothing is held open)."""

    @blocking
    async def exec(
        self,
        *args: str,
        stdout: StreamType = StreamType.PIPE,
        stderr: StreamType = StreamType.PIPE,
        timeout: int | None = None,
        workdir: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        text: bool = True,
        bufsize: int = -1,
        pty: bool = False,
        _pty_info: Any = None,
        pty_info: Any = None,
    ) -> ContainerProcess[Any]:
        """Run a command in the sandbox; returns its `ContainerProcess`."""
        if not args or not all(isinstance(a, str) for a in args):
            raise InvalidError("exec needs a command: strings, e.g. sb.exec('python', '-c', 'print(1)')")
        _refuse(pty=pty or _pty_info or pty_info)
        secret_list, _ = _attachments.check(list(secrets or []), {}, "Sandbox.exec")
        secret_ids = [await s._hydrate() for s in secret_list]
        params: dict[str, Any] = {
            "sandbox_id": self._sandbox_id, "argv": list(args), "workdir": _workdir(workdir),
            "env": _env(env, "Sandbox.exec"), "secret_ids": secret_ids,
            "stdout": _mode(stdout, "stdout"), "stderr": _mode(stderr, "stderr")}
        if timeout is not None:
            params["timeout"] = validate_timeout(timeout)
        got = await self._client.call("sandbox.exec", params, retry=False)
        process: ContainerProcess[Any] = ContainerProcess(
            self._client, self._sandbox_id, str(got["process_id"]), text=text, by_line=bufsize == 1,
            stdout_discarded=stdout is StreamType.DEVNULL, stderr_discarded=stderr is StreamType.DEVNULL)
        for stream, reader in ((stdout, process.stdout), (stderr, process.stderr)):
            if stream is StreamType.STDOUT:
                spawn_background(print_stream(reader))
        return process
