"""Modal's public API next to skylift's: the pinned real `modal` is installed in a venv of its own (cached),
both sides are dumped by `modal_api_dump.py`, and the difference is what skylift still lacks.

    python tests/compat/modal_api_report.py     # rewrite the committed baseline and docs/modal-api-report.md

The baseline (`modal_api_baseline.json`) lists every key skylift had when it was written;
`test_modal_api_diff.py` fails when one of them goes missing (a regression).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

MODAL_VERSION = "1.6.4"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DUMPER = HERE / "modal_api_dump.py"
BASELINE = HERE / "modal_api_baseline.json"
REPORT = ROOT / "docs" / "modal-api-report.md"
ENV_CACHE = "SKYLIFT_COMPAT_CACHE"

# Modal API that skylift leaves out on purpose (docs/modal-compatibility.md): each key with its reason.
# They count as neither present nor missing.
DELIBERATE = {
    "member:modal.Client.get_stub": "Modal's gRPC stub; skylift speaks its own protocol (design.md)",
    "member:modal.Client.stub": "Modal's gRPC stub; skylift speaks its own protocol (design.md)",
    "member:modal.Client.get_input_plane_metadata": "Modal's regional input-plane gRPC metadata",
    "attr:modal.cloud_bucket_mount.cloud_bucket_mounts_to_proto": "builds Modal's protobuf messages",
    "attr:modal.network_file_system.network_file_system_mount_protos": "builds Modal's protobuf messages",
    "attr:modal.mount.client_mount_name": "Modal's hosted client-package mounts; skylift ships its runtime",
    "attr:modal.mount.create_client_mount": "Modal's hosted client-package mounts; skylift ships its runtime",
    "attr:modal.mount.create_client_dependency_mounts": "Modal's hosted client-package mounts",
    "attr:modal.mount.python_standalone_mount_name": "Modal's hosted Python-standalone mounts",
}


def cache_dir() -> Path:
    base = os.environ.get(ENV_CACHE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "skylift-compat")
    return Path(base) / f"modal-{MODAL_VERSION}"


def modal_python() -> Path:
    """The interpreter of a venv that holds the real `modal` (created on first use: about a minute)."""
    env_dir = cache_dir() / "venv"
    python = env_dir / "bin" / "python"
    marker = env_dir / ".installed"
    if not marker.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"modal=={MODAL_VERSION}"], check=True, timeout=600, capture_output=True)
        marker.write_text(MODAL_VERSION)
    return python


def reference() -> dict[str, Any]:
    """The real modal's dump, cached per version of the dumper."""
    digest = hashlib.sha256(DUMPER.read_bytes()).hexdigest()[:16]
    cached = cache_dir() / f"reference-{digest}.json"
    if not cached.exists():
        out = subprocess.run([str(modal_python()), str(DUMPER)], check=True, capture_output=True, text=True,
                             timeout=300, env={**os.environ, "PYTHONPATH": "", "MODAL_TOKEN_ID": ""}).stdout
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(out)
    result: dict[str, Any] = json.loads(cached.read_text())
    return result


def skylift_dump(ref: dict[str, Any]) -> dict[str, Any]:
    """The same keys looked up on skylift through `import modal` (a fresh interpreter with the alias)."""
    ref_file = cache_dir() / "reference-for-probe.json"
    ref_file.parent.mkdir(parents=True, exist_ok=True)
    ref_file.write_text(json.dumps(ref))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("SKYLIFT_MODAL_ALIAS", None)
    out = subprocess.run([sys.executable, "-m", "skylift.compat", str(DUMPER), "--probe", str(ref_file)],
                         check=True, capture_output=True, text=True, timeout=120, env=env).stdout
    result: dict[str, Any] = json.loads(out)
    return result


CATEGORIES = {
    "module": "modules", "attr": "module-level names", "member": "class members", "param": "parameters",
    "aio": "`.aio` variants of class members",
    "excbase": "exception bases", "cli": "CLI commands and groups", "cliopt": "CLI options and arguments",
}


def category(key: str) -> str:
    return key.partition(":")[0]


def owner(key: str) -> str:
    """What a key belongs to, to group the report: `member:modal.App.stop` → `modal.App`."""
    what, _, rest = key.partition(":")
    if what == "param":
        return rest.partition("(")[0]
    if what == "aio":
        return rest.rpartition(".")[0]
    if what in ("cli", "cliopt"):
        return rest.rsplit(" ", 1)[0] if what == "cliopt" else rest
    if what == "excbase":
        return rest.partition("<")[0]
    return rest.rpartition(".")[0]


def leaf(key: str) -> str:
    what, _, rest = key.partition(":")
    if what == "param":
        return rest.partition("(")[2][:-1]
    if what in ("cli", "cliopt"):
        return rest.rsplit(" ", 1)[-1]
    if what == "excbase":
        return rest.partition("<")[2]
    return rest.rpartition(".")[2]


def deliberate(key: str) -> bool:
    """A deliberate difference, or a parameter or `.aio` of one."""
    if category(key) == "aio":
        return f"member:{key.partition(':')[2]}" in DELIBERATE
    return key in DELIBERATE or (category(key) == "param" and bool(
        {f"attr:{owner(key)}", f"member:{owner(key)}"} & DELIBERATE.keys()))


def missing(ref: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    return sorted(k for k in ref if k not in ours and not deliberate(k))


def counts(ref: dict[str, Any], ours: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """category → (skylift has, Modal has), deliberate differences left out."""
    total: collections.Counter[str] = collections.Counter()
    have: collections.Counter[str] = collections.Counter()
    for key in ref:
        if deliberate(key):
            continue
        total[category(key)] += 1
        have[category(key)] += key in ours
    return {c: (have[c], total[c]) for c in CATEGORIES if total[c]}


def render(ref: dict[str, Any], ours: dict[str, Any]) -> str:
    lines = [
        f"# skylift against Modal {MODAL_VERSION}: the API report",
        "",
        "Generated by `python tests/compat/modal_api_report.py`; checked by `tests/compat/test_modal_api_diff.py`,",
        "which fails when anything listed as present here goes missing. How the dump works and what each",
        "kind of entry means: `tests/compat/modal_api_dump.py`; the rule for `import modal` and the deliberate",
        "differences: [modal-compatibility.md](modal-compatibility.md).",
        "",
        "| | skylift has | Modal has |",
        "|---|---:|---:|",
    ]
    for cat, (have, total) in counts(ref, ours).items():
        lines.append(f"| {CATEGORIES[cat]} | {have} | {total} |")
    unchecked = sum(1 for v in ours.values() if v == "unchecked")
    lines += ["", f"Deliberate differences, counted in neither column: {len(DELIBERATE)}. Parameters and `.aio`",
              "variants counted as present but not compared (skylift makes the callable per instance, a property "
              f"on the class): {unchecked}.",
              "", "## Still missing", "",
              "Parameters and `.aio` variants of a missing class or method are counted above and not listed again.", ""]
    by_cat: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    gone = set(missing(ref, ours))
    for key in sorted(gone):
        if category(key) == "param" and ({f"attr:{owner(key)}", f"member:{owner(key)}"} & gone):
            continue
        if category(key) == "aio" and f"member:{key.partition(':')[2]}" in gone:
            continue
        by_cat[category(key)][owner(key)].append(leaf(key))
    for cat in CATEGORIES:
        if cat not in by_cat:
            continue
        lines += [f"### {CATEGORIES[cat]}", ""]
        for own, leaves in sorted(by_cat[cat].items()):
            lines.append(f"- `{own}`: " + ", ".join(f"`{x}`" for x in sorted(leaves)))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ref = reference()
    ours = skylift_dump(ref)
    present = sorted(k for k in ref if k in ours and not deliberate(k))
    BASELINE.write_text(json.dumps({"modal_version": MODAL_VERSION, "present": present}, indent=0) + "\n")
    REPORT.write_text(render(ref, ours) + "\n")
    for cat, (have, total) in counts(ref, ours).items():
        print(f"{CATEGORIES[cat]:28} {have:5} / {total}")


if __name__ == "__main__":
    main()
