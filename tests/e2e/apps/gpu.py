import skylift as modal

app = modal.App("e2e-gpu")


@app.function(gpu="A100")
def on_gpu() -> str:
    return "never"
