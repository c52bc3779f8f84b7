"""Run a Modal program unchanged: `python -m skylift.compat script.py [args]` or
`python -m skylift.compat -m package.module [args]`.

The script runs as `__main__`, exactly as `python script.py` would run it, with `import modal` answered
by skylift (`modal.App is skylift.App`; docs/modal-compatibility.md). `skylift run/deploy/serve/shell`
and skylift's containers do the same on their own; this is for plain scripts (`with app.run():`,
`Function.from_name(...)`, a notebook's kernel via `install_modal_alias()`).
"""

from __future__ import annotations

import os
import runpy
import sys

from ._modal_alias import ENV_ALIAS, install

USAGE = "usage: python -m skylift.compat SCRIPT.py [ARGS...] | -m MODULE [ARGS...]"


def install_modal_alias() -> bool:
    """Make `import modal` import skylift in this interpreter (a notebook, a test's conftest).

    Returns False where the rule leaves `modal` alone: the real package is installed and
    `SKYLIFT_MODAL_ALIAS=0` is set, or it was imported already.
    """
    return install()


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not args else sys.stdout)
        print(f"`import modal` means skylift unless {ENV_ALIAS}=0 is set and the real modal package is installed.",
              file=sys.stderr if not args else sys.stdout)
        raise SystemExit(2 if not args else 0)
    install()
    if args[0] == "-m":
        if len(args) < 2:
            raise SystemExit(f"-m needs a module name\n{USAGE}")
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return
    sys.argv = args
    sys.path[0] = os.path.dirname(os.path.abspath(args[0]))  # as `python script.py` sets it
    runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
