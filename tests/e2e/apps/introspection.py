"""An app for App/Function/FunctionCall introspection, read-only volumes and stop_fetching_inputs."""

import os

import skylift as modal

app = modal.App("e2e-introspection")
ro_volume = modal.Volume.from_name("e2e-introspection-ro", create_if_missing=True)


@app.function(timeout=77, env={"SET": "yes", "UNSET": None})
def square(x: int) -> int:
    print(f"squaring {x}")
    return x * x


@app.function(volumes={"/ro": ro_volume.read_only()})
def read_only_write() -> str:
    with open("/ro/seed.txt") as f:
        seed = f.read()
    try:
        with open("/ro/new.txt", "w") as f:
            f.write("x")
        wrote = "wrote"
    except OSError:
        wrote = "refused"
    try:
        ro_volume.commit()
        committed = "committed"
    except modal.exception.InvalidError:
        committed = "commit refused"
    return f"{seed}|{wrote}|{committed}|{os.environ.get('UNSET', '-')}"


@app.function()
def stop_after_this() -> str:
    modal.experimental.stop_fetching_inputs()
    return os.environ["SKYLIFT_TASK_ID"]


@app.cls()
class Counter:
    start: int = modal.parameter(default=5)

    @modal.method()
    def value(self) -> int:
        return self.start
