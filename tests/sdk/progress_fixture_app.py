"""The app the progress-output tests run: an image with a step that is always rebuilt, and a map."""

import skylift as modal

image = modal.Image.debian_slim().run_commands("echo progress-fixture-step", force_build=True)
app = modal.App("progress-fixture", image=image)


@app.function()
def square(x: int) -> int:
    if x % 100 == 0:
        print(f"squaring {x}")
    return x * x


@app.local_entrypoint()
def main(n: int = 200) -> None:
    print("sum", sum(square.map(range(n))))
