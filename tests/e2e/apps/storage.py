"""An app using Secrets, Volumes, Dicts and Queues from inside containers (see test_storage.py)."""

from __future__ import annotations

import os
import time
from typing import Any

import skylift as modal

app = modal.App("e2e-storage")

SECRET_NAME = "e2e-secret"
vol = modal.Volume.from_name("e2e-vol", create_if_missing=True)
shared = modal.Dict.from_name("e2e-dict", create_if_missing=True)
jobs = modal.Queue.from_name("e2e-queue", create_if_missing=True)


@app.function(secrets=[modal.Secret.from_name(SECRET_NAME),
                       modal.Secret.from_dict({"FROM_DICT": "dict", "SHARED": "second secret wins"})],
              env={"FROM_ENV": "env"})
def read_env(keys: list[str]) -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in keys}


@app.function(volumes={"/data": vol})
def write_files(files: dict[str, str], commit: bool = True) -> list[str]:
    for path, text in files.items():
        os.makedirs(os.path.dirname(f"/data/{path}") or "/data", exist_ok=True)
        with open(f"/data/{path}", "w") as f:
            f.write(text)
    if commit:
        vol.commit()
    return sorted(os.listdir("/data"))


@app.function(volumes={"/data": vol})
def read_files(paths: list[str], reload: bool = True) -> dict[str, str | None]:
    if reload:
        vol.reload()
    out: dict[str, str | None] = {}
    for path in paths:
        try:
            with open(f"/data/{path}") as f:
                out[path] = f.read()
        except FileNotFoundError:
            out[path] = None
    return out


@app.function(volumes={"/data": vol})
def remove_and_commit(path: str) -> None:
    vol.reload()
    os.remove(f"/data/{path}")
    vol.commit()


@app.function(volumes={"/data": vol})
def reload_while_open(path: str) -> str:
    with open(f"/data/{path}", "w") as f:
        f.write("open")
        try:
            vol.reload()
        except modal.exception.Error as exc:
            return str(exc)
    return "no error"


@app.function()
def use_dict_and_queue(key: str, d: modal.Dict, q: modal.Queue) -> Any:
    d[key] = {"from": "container"}
    q.put(("done", key))
    return shared.get("local-key"), key in d


@app.function()
def wait_for_item(timeout: float) -> tuple[Any, float]:
    start = time.monotonic()
    item = jobs.get(timeout=timeout, partition="wake")
    return item, time.monotonic() - start
