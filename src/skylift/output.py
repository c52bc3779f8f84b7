"""`modal.output`: `enable_output()`, the context manager that shows what `app.run()` and `.map()` do
(`with modal.enable_output(): with app.run(): ...`). The implementation is `skylift._output`."""

from __future__ import annotations

from ._output import enable_output

__all__ = ["enable_output"]
