"""skylift: Modal's developer experience on machines you own.

    import skylift as modal

    app = modal.App("hello")

    @app.function()
    def square(x: int) -> int:
        return x * x

    @app.local_entrypoint()
    def main():
        print(square.remote(7))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import exception

if TYPE_CHECKING:  # what type checkers see; at run time each name loads on first use (`__getattr__`)
    from ._client import Client as Client  # (not in __all__, as before: `modal.Client` still works)
    from ._context import current_function_call_id, current_input_id, is_local
    from ._output import enable_output
    from .app import App, LocalEntrypoint, Stub
    from .cloud_bucket_mount import CloudBucketMount
    from .cls import Cls, Obj, parameter
    from .dict import Dict
    from .exception import Error
    from .file_pattern_matcher import FilePatternMatcher
    from .functions import Function, FunctionCall, FunctionStats
    from .image import Image
    from .partial_function import batched, concurrent, enter, exit, method
    from .probe import Probe
    from .queue import Queue
    from .retries import Retries
    from .sandbox import Sandbox
    from .schedule import Cron, Period
    from .scheduler_placement import SchedulerPlacement
    from .secret import Secret
    from .volume import Volume
    from .web import asgi_app, fastapi_endpoint, web_endpoint, web_server, wsgi_app

    __version__: str

# Where each public name lives. Nothing is imported until it is used: a container's runtime needs
# none of it before its first input, and every module loaded here is paid by every cold start.
_LAZY = {
    "Client": "_client",
    "current_function_call_id": "_context", "current_input_id": "_context", "is_local": "_context",
    "enable_output": "_output",
    "App": "app", "LocalEntrypoint": "app", "Stub": "app",
    "CloudBucketMount": "cloud_bucket_mount",
    "Cls": "cls", "Obj": "cls", "parameter": "cls",
    "Dict": "dict",
    "Error": "exception",
    "FilePatternMatcher": "file_pattern_matcher",
    "Function": "functions", "FunctionCall": "functions", "FunctionStats": "functions",
    "Image": "image",
    "batched": "partial_function", "concurrent": "partial_function", "enter": "partial_function",
    "exit": "partial_function", "method": "partial_function",
    "Probe": "probe",
    "Queue": "queue",
    "Retries": "retries",
    "SchedulerPlacement": "scheduler_placement",
    "Sandbox": "sandbox",
    "Cron": "schedule", "Period": "schedule",
    "Secret": "secret",
    "Volume": "volume",
    "asgi_app": "web", "fastapi_endpoint": "web", "web_endpoint": "web", "web_server": "web", "wsgi_app": "web",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    elif name == "__version__":
        from .config import version

        value = version()
    elif not name.startswith("__"):
        # A submodule nobody imported yet (`skylift.functions` after a bare `import skylift`), as
        # before the names above were loaded lazily.
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'skylift' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'skylift' has no attribute {name!r}")
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})


__all__ = [
    "App", "CloudBucketMount", "Cls", "Cron", "Dict", "Error", "FilePatternMatcher", "Function", "FunctionCall",
    "FunctionStats", "Image",
    "LocalEntrypoint", "Obj", "Period", "Probe", "Queue", "Retries", "Sandbox", "SchedulerPlacement", "Secret",
    "Stub", "Volume", "asgi_app",
    "batched",
    "concurrent", "current_function_call_id", "current_input_id", "enable_output", "enter", "exception", "exit",
    "fastapi_endpoint", "is_local", "method", "parameter", "web_endpoint", "web_server", "wsgi_app",
]
