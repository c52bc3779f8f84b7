"""The CLI imports a command's module only when that command runs: `skylift run` doesn't pay for
every command group, and no server-side or terminal-UI dependency reaches the client."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from skylift.cli.main import cli

# What a client process must never load (server, worker, and heavy optional dependencies).
FORBIDDEN = ("skylift.server", "skylift.worker", "rich", "cryptography", "croniter", "httptools", "uvicorn")

PROBE = """
import json, sys
import click
from skylift.cli.main import cli
command = cli.get_command(click.Context(cli), "run")
import skylift, skylift.app, skylift.functions, skylift._client, skylift._runner
print(json.dumps({"command": command.name, "modules": sorted(sys.modules)}))
"""


def test_run_command_loads_only_its_own_module() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    got = json.loads(out)
    assert got["command"] == "run"
    modules = set(got["modules"])
    assert "skylift.cli.run" in modules
    # app_cmd holds the log follower that `deploy --stream-logs` shares; the other groups stay out.
    others = {m for m in modules if m.startswith("skylift.cli.") and m.endswith("_cmd")} - {"skylift.cli.app_cmd"}
    assert others == set(), f"`skylift run` imported other command groups: {sorted(others)}"
    loaded = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert loaded == [], f"the client imported {loaded}"


def test_help_lists_every_command_and_app_keeps_schedules() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0, top.output
    for name in ("run", "deploy", "serve", "shell", "app", "container", "server", "schedule", "token", "secret",
                 "volume", "dict", "queue"):
        assert f"  {name} " in top.output, f"{name} missing from --help:\n{top.output}"
    app = runner.invoke(cli, ["app", "--help"])
    assert app.exit_code == 0, app.output
    assert "schedules" in app.output
    bogus = runner.invoke(cli, ["no-such-command"])
    assert bogus.exit_code != 0 and "No such command" in bogus.output
