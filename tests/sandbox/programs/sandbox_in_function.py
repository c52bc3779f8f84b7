"""A function that starts a sandbox without `app=` (its own app, as in Modal)."""

import modal

app = modal.App("sandbox-in-function")


@app.function()
def echo_in_sandbox(word: str) -> str:
    sb = modal.Sandbox.create("echo", word)
    out = sb.stdout.read()
    sb.wait()
    return out
