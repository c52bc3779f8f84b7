"""`import modal` answered by skylift (`skylift._modal_alias`): in this process, under
`python -m skylift.compat`, in the CLI's import of a program, and in the container runtime."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import skylift
from skylift import _modal_alias
from skylift._protocol import api

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from runtime_peer import SRC, Peer, definition

ENV = {**os.environ, "PYTHONPATH": SRC}
ENV.pop(_modal_alias.ENV_ALIAS, None)


@pytest.fixture
def alias() -> Iterator[None]:
    assert _modal_alias.install()
    yield
    _modal_alias.uninstall()


def run_python(*args: str, cwd: Path | None = None, **env: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          env={**ENV, **env}, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_modal_and_its_submodules_are_skylifts(alias: None) -> None:
    import modal
    import modal.exception
    import modal.functions
    from modal.client import Client
    from modal.exception import NotFoundError

    assert modal is skylift and modal.App is skylift.App
    assert modal.exception is skylift.exception and modal.functions is skylift.functions
    assert NotFoundError is skylift.exception.NotFoundError and Client is skylift.Client
    assert isinstance(skylift.exception.NotFoundError("x"), modal.Error)
    assert sys.modules["modal.functions"] is skylift.functions
    # objects made under either name pickle by skylift's names, so they travel to a process without the alias
    assert pickle.loads(pickle.dumps(modal.Retries(max_retries=2))).max_retries == 2


def test_a_modal_module_skylift_lacks_is_a_missing_module(alias: None) -> None:
    with pytest.raises(ModuleNotFoundError, match=r"modal\.no_such_module"):
        import modal.no_such_module  # noqa: F401


def test_the_opt_out_applies_only_where_the_real_package_is_installed(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "modal"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("REAL = True\n")
    code = "import skylift.compat as c; c.install_modal_alias(); import modal; print(getattr(modal, 'REAL', False))"
    with_real = {"PYTHONPATH": f"{SRC}{os.pathsep}{tmp_path / 'site'}"}
    assert run_python("-c", code, **with_real) == "False"  # on by default, even beside the real package
    assert run_python("-c", code, SKYLIFT_MODAL_ALIAS="0", **with_real) == "True"
    # without the real package there is nothing else `import modal` could mean
    assert run_python("-c", code, SKYLIFT_MODAL_ALIAS="0") == "False"


def test_compat_runs_a_script_as_main_with_its_arguments(tmp_path: Path) -> None:
    (tmp_path / "helper_mod.py").write_text("import modal\nVALUE = modal.App\n")
    script = tmp_path / "prog.py"
    script.write_text(
        "import sys\nimport modal\nimport skylift\nfrom modal.exception import InvalidError\nimport helper_mod\n"
        "if __name__ == '__main__':\n"
        "    print(modal.App is skylift.App is helper_mod.VALUE, InvalidError is skylift.exception.InvalidError,\n"
        "          sys.argv[1:])\n")
    assert run_python("-m", "skylift.compat", str(script), "a", "--b") == "True True ['a', '--b']"
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "tool.py").write_text(script.read_text().replace("import helper_mod\n", "")
                                             .replace("is helper_mod.VALUE", ""))
    assert run_python("-m", "skylift.compat", "-m", "pkg.tool", "x", cwd=tmp_path) == "True True ['x']"


def test_the_cli_imports_a_program_that_says_import_modal(tmp_path: Path) -> None:
    program = tmp_path / "cli_modal_prog.py"
    program.write_text("import modal\nimport modal.functions\napp = modal.App('prog')\n"
                       "@app.function()\ndef f():\n    return 1\n")
    code = ("from skylift.cli._import import import_ref, find_app; import skylift; "
            f"m = import_ref({str(program)!r}, is_module=False); "
            "print(find_app(m) is m.app, m.modal is skylift, isinstance(m.f, skylift.Function))")
    assert run_python("-c", code) == "True True True"


def test_the_container_runtime_imports_a_module_that_says_import_modal(tmp_path: Path) -> None:
    (tmp_path / "modal_user_app.py").write_text(
        "import modal\nimport modal.exception\napp = modal.App('t')\n"
        "@app.function()\n"
        "def check(x):\n"
        "    import skylift\n"
        "    return [x, modal is skylift, modal.exception.NotFoundError is skylift.exception.NotFoundError]\n")

    async def main() -> None:
        peer = Peer(definition(None, module="modal_user_app", qualname="check"))
        await peer.start(tmp_path)
        try:
            [output] = await peer.wait_outputs([peer.add_input(7)])
            assert output["status"] == api.STATUS_SUCCESS, (output.get("traceback"), peer.output_text)
            assert pickle.loads(output["data"]) == [7, True, True]
            peer.request_stop()
            assert await peer.wait_exit() == 0
        finally:
            await peer.close()

    asyncio.run(main())
