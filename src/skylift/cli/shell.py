"""`skylift shell FILE::fn [--cmd CMD]`: a shell in a fresh container of a function, like `modal shell`.

The app is run (ephemeral) so the function's image is built and its source uploaded; then the
container is started on this machine by `python -m skylift.worker.shell` — a worker-side program,
run, not imported, because the SDK and CLI never import the worker. That needs the embedded platform
(the worker beside this command, as root for the container runtime); see that module for why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from .. import _local_server, _output, config
from ..exception import InvalidError
from ._common import env_option
from ._import import find_runnable, import_ref, split_ref


@click.command("shell")
@click.argument("ref")
@click.option("-m", "module_flag", is_flag=True, help="REF is a module path (package.module), not a file.")
@click.option("--cmd", default=None, help="Run this shell command instead of an interactive shell.")
@click.option("-q", "--quiet", is_flag=True, help="Don't show the image build.")
@env_option
def shell_cmd(ref: str, module_flag: bool, cmd: str | None, quiet: bool) -> None:
    """Open a shell in a new container with a function's image, mounts and environment.

    `skylift shell app.py::fn` (or `app.py::Cls.method`); `--cmd 'python -V'` runs one command.
    """
    target, name = split_ref(ref)
    module = import_ref(target, is_module=module_flag)
    runnable = find_runnable(module, name)
    function = runnable.function or (runnable.cls._service if runnable.cls is not None else None)
    if function is None:
        raise InvalidError(f"{ref} is a local entrypoint; `skylift shell` needs a function, e.g. {target}::my_function")
    if os.environ.get("SKYLIFT_SERVER_URL"):
        raise InvalidError("skylift shell starts the container on this machine, beside the embedded platform; "
                           "unset SKYLIFT_SERVER_URL (use `skylift container exec` for containers elsewhere)")
    home = config.home()
    output = _output.enable_output() if not quiet else _Quiet()
    with output, runnable.app.run():
        definition = function._definition or {}
        info = _local_server.read_info(home)
        if info is None:
            raise InvalidError(f"no skylift platform is running under {home}")
        spec = {"home": str(home), "server_url": info.unix_url, "image_id": definition.get("image_id"),
                "definition": definition, "mounts": definition.get("mounts") or [],
                "command": ["/bin/sh", "-c", cmd] if cmd else None}
        with tempfile.TemporaryDirectory(prefix="skylift-shell-") as scratch:
            path = Path(scratch) / "spec.json"
            path.write_text(json.dumps(spec))
            sys.stdout.flush()
            code = subprocess.call([sys.executable, "-m", "skylift.worker.shell", str(path)])
    sys.exit(code)


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
