"""A function that starts a sandbox without `app=` (its own app, as in Modal)."""

import modal

app = modal.App("sandbox-in-function")


@app.function()
def echo_in_sandbox(word: str) -> str:
    sb = modal.Sandbox.create("echo", word)
    out = sb.stdout.read()
    sb.wait()
    return out


@app.function()
def lists_its_own() -> bool:
    sb = modal.Sandbox.create(tags={"from": "function"})
    try:
        return sb.object_id in [s.object_id for s in modal.Sandbox.list(tags={"from": "function"})]
    finally:
        sb.terminate()
