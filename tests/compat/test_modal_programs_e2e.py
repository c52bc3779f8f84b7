"""An unchanged Modal program (`import modal`, nothing renamed) against the real platform: started with
`python -m skylift.compat`, its functions run in skylift's containers, which import the program's
module (and its `import modal`) themselves; `modal.runner.deploy_app` deploys it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import skylift

SRC = str(Path(skylift.__file__).resolve().parents[1])

PROGRAM = '''
import modal
import modal.exception
from modal.runner import deploy_app

app = modal.App(NAME)


@app.function()
def check(x):
    import skylift
    try:
        modal.Dict.from_name("no-such-dict-" + NAME).get("k")
        not_found = "no error"
    except modal.exception.NotFoundError as err:
        not_found = type(err).__name__
    except Exception as err:  # noqa: BLE001
        not_found = f"wrong type {type(err).__mro__}"
    return [x * 2, modal is skylift, modal.App is skylift.App, not_found]


if __name__ == "__main__":
    with app.run():
        print("RUN", check.remote(21))
    result = deploy_app(app)
    print("DEPLOYED", result.app_id.startswith("ap-"))
    print("LOOKUP", modal.Function.from_name(NAME, "check").remote(1))
'''


def test_an_unchanged_modal_program_runs(platform: object, tmp_path: Path) -> None:
    script = tmp_path / "unchanged_modal_program.py"
    name = f"compat-{uuid.uuid4().hex[:8]}"
    script.write_text(f"NAME = {name!r}\n" + PROGRAM)
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("SKYLIFT_MODAL_ALIAS", None)
    done = subprocess.run([sys.executable, "-m", "skylift.compat", str(script)], capture_output=True,
                          text=True, timeout=110, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "RUN [42, True, True, 'NotFoundError']" in lines, done.stdout + done.stderr
    assert "DEPLOYED True" in lines and "LOOKUP [2, True, True, 'NotFoundError']" in lines, done.stdout


CLI_PROGRAM = '''
import modal

app = modal.App(NAME)


@app.function()
def where() -> str:
    import skylift
    return f"container says modal is skylift: {modal is skylift}"


@app.local_entrypoint()
def main(n: int = 1):
    print(where.remote(), n)
'''


def test_skylift_run_runs_an_unchanged_modal_program(platform: object, tmp_path: Path) -> None:
    script = tmp_path / "unchanged_cli_program.py"
    script.write_text(f"NAME = 'compat-cli-{uuid.uuid4().hex[:8]}'\n" + CLI_PROGRAM)
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("SKYLIFT_MODAL_ALIAS", None)
    done = subprocess.run([sys.executable, "-m", "skylift.cli.main", "run", "-q", str(script), "--n", "3"],
                          capture_output=True, text=True, timeout=110, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "container says modal is skylift: True 3" in done.stdout, done.stdout + done.stderr
