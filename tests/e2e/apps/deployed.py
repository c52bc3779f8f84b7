"""An app the tests deploy, then look up by name."""

import skylift as modal

app = modal.App("e2e-deployed")


@app.function(min_containers=1)
def version() -> str:
    return "v-one"


@app.cls()
class Greeter:
    greeting: str = modal.parameter(default="hello")

    @modal.method()
    def greet(self, name: str) -> str:
        return f"{self.greeting} {name}"
