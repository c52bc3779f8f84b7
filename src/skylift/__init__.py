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

from typing import Any

from . import exception
from ._context import current_function_call_id, current_input_id, is_local
from ._output import enable_output
from .app import App, LocalEntrypoint, Stub
from .cloud_bucket_mount import CloudBucketMount
from .cls import Cls, Obj, parameter
from .config import version as _version
from .dict import Dict
from .functions import Function, FunctionCall, FunctionStats
from .partial_function import batched, concurrent, enter, exit, method
from .queue import Queue
from .retries import Retries
from .schedule import Cron, Period
from .secret import Secret
from .volume import Volume
from .web import asgi_app, fastapi_endpoint, web_server, wsgi_app

__version__ = _version()


def __getattr__(name: str) -> Any:
    # Heavier or optional pieces load on first use, so `import skylift` stays fast in containers.
    if name == "Image":
        from .image import Image

        return Image
    if name == "Client":
        from ._client import Client

        return Client
    if name == "web_endpoint":
        raise exception.DeprecationError("modal.web_endpoint was renamed to modal.fastapi_endpoint")
    raise AttributeError(f"module 'skylift' has no attribute {name!r}")


__all__ = [
    "App", "CloudBucketMount", "Cls", "Cron", "Dict", "Function", "FunctionCall", "FunctionStats", "Image",
    "LocalEntrypoint", "Obj", "Period", "Queue", "Retries", "Secret", "Stub", "Volume", "asgi_app", "batched",
    "concurrent", "current_function_call_id", "current_input_id", "enable_output", "enter", "exception", "exit",
    "fastapi_endpoint", "is_local", "method", "parameter", "web_server", "wsgi_app",
]
