"""Web endpoints: `@modal.fastapi_endpoint`, `@modal.asgi_app`, `@modal.wsgi_app`, `@modal.web_server`.

Each decorated function (or `@app.cls` method) gets a stable URL served by the control plane's
HTTP gateway; every request becomes an input of the function's container pool, so web traffic
scales from zero like any other call and honours `@modal.concurrent`. See docs/web.md.

    @app.function(image=modal.Image.debian_slim().pip_install("fastapi[standard]"))
    @modal.fastapi_endpoint(method="POST", docs=True)
    def echo(item: dict) -> dict:
        return item

    @app.function()
    @modal.asgi_app()
    def api():
        return my_fastapi_or_starlette_app

Example:
    >>> import skylift as modal
    >>> @modal.fastapi_endpoint(method="POST", label="my-echo")
    ... def echo(item: dict) -> dict:
    ...     return item
    >>> echo.web_config["type"], echo.web_config["method"], echo.web_config["label"]
    ('function', 'POST', 'my-echo')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .exception import InvalidError
from .partial_function import Flag, PartialFunction, _wrap

# Modal: a label is a DNS label, lowercase letters, digits and dashes; invalid ones are rejected,
# not normalised.
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

WEB_TYPES = ("function", "asgi", "wsgi", "web_server")


def check_label(label: str | None, decorator: str) -> None:
    if label is None:
        return
    if not isinstance(label, str) or not _LABEL_RE.match(label):
        raise InvalidError(
            f"@modal.{decorator}(label={label!r}): a label must be 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit (e.g. label=\"my-endpoint\")")


def _common(decorator: str, label: str | None, custom_domains: Any, requires_proxy_auth: bool) -> dict[str, Any]:
    check_label(label, decorator)
    if custom_domains:
        raise InvalidError(f"@modal.{decorator}: custom_domains= is not available on skylift; put a reverse proxy "
                           "in front of the gateway instead (see docs/web.md)")
    if not isinstance(requires_proxy_auth, bool):
        raise InvalidError(f"@modal.{decorator}: requires_proxy_auth must be True or False")
    return {"label": label, "requires_proxy_auth": requires_proxy_auth}


def _decorator(decorator: str, config: dict[str, Any], *, no_args: bool) -> Callable[[Any], PartialFunction]:
    def wrap(f: Any) -> PartialFunction:
        if isinstance(f, PartialFunction) and Flag.WEB in f.flags:
            raise InvalidError(f"@modal.{decorator}: a function can have only one web decorator")
        raw = f.raw_f if isinstance(f, PartialFunction) else f
        if no_args and callable(raw):
            import inspect

            params = [p for p in inspect.signature(raw).parameters.values()
                      if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            if params and params[0].name == "self":
                params = params[1:]
            if params:
                raise InvalidError(f"@modal.{decorator} decorates a factory that takes no arguments; "
                                   f"{getattr(raw, '__name__', raw)!r} takes {', '.join(p.name for p in params)}")
            if inspect.iscoroutinefunction(raw) and decorator != "web_server":
                raise InvalidError(f"@modal.{decorator}: the factory must be a plain (sync) function that returns "
                                   "the app; the app itself may be async")
        return _wrap(f, Flag.WEB, decorator, web_config=dict(config))

    return wrap


def fastapi_endpoint(_warn_parentheses_missing: Any = None, *, method: str = "GET", label: str | None = None,
                     custom_domains: Any = None, docs: bool = False,
                     requires_proxy_auth: bool = False) -> Callable[[Any], PartialFunction]:
    """Serve one function over HTTP, wrapped in FastAPI (FastAPI must be in the image).

    Query parameters and JSON bodies map to the function's arguments as in FastAPI; `docs=True`
    serves `/docs`.
    """
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @modal.fastapi_endpoint() with parentheses")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise InvalidError(f"@modal.fastapi_endpoint(method={method!r}): use one of {', '.join(sorted(_METHODS))}")
    config = {"type": "function", "method": method.upper(), "docs": bool(docs),
              **_common("fastapi_endpoint", label, custom_domains, requires_proxy_auth)}
    return _decorator("fastapi_endpoint", config, no_args=False)


def web_endpoint(*args: Any, **kwargs: Any) -> Any:
    """Renamed: `@modal.fastapi_endpoint`. The name exists, as in Modal, so a program that imports it loads;
    using it raises DeprecationError."""
    from .exception import DeprecationError

    raise DeprecationError("modal.web_endpoint was renamed to modal.fastapi_endpoint")


def asgi_app(_warn_parentheses_missing: Any = None, *, label: str | None = None, custom_domains: Any = None,
             requires_proxy_auth: bool = False) -> Callable[[Any], PartialFunction]:
    """Serve the ASGI app (FastAPI, Starlette, ...) that the decorated nullary function returns."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @modal.asgi_app() with parentheses")
    config = {"type": "asgi", **_common("asgi_app", label, custom_domains, requires_proxy_auth)}
    return _decorator("asgi_app", config, no_args=True)


def wsgi_app(_warn_parentheses_missing: Any = None, *, label: str | None = None, custom_domains: Any = None,
             requires_proxy_auth: bool = False) -> Callable[[Any], PartialFunction]:
    """Serve the WSGI app (Flask, Django, ...) that the decorated nullary function returns."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @modal.wsgi_app() with parentheses")
    config = {"type": "wsgi", **_common("wsgi_app", label, custom_domains, requires_proxy_auth)}
    return _decorator("wsgi_app", config, no_args=True)


def web_server(port: int, *, startup_timeout: float = 5.0, label: str | None = None, custom_domains: Any = None,
               requires_proxy_auth: bool = False) -> Callable[[Any], PartialFunction]:
    """Serve whatever HTTP server the decorated function starts on `port` (it must listen on 0.0.0.0
    or 127.0.0.1). The container waits up to `startup_timeout` seconds for the port to open."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidError(f"@modal.web_server(port={port!r}): port must be an int between 1 and 65535")
    if isinstance(startup_timeout, bool) or not isinstance(startup_timeout, (int, float)) or startup_timeout <= 0:
        raise InvalidError(f"@modal.web_server(startup_timeout={startup_timeout!r}): must be a positive number")
    config = {"type": "web_server", "port": port, "startup_timeout": float(startup_timeout),
              **_common("web_server", label, custom_domains, requires_proxy_auth)}
    return _decorator("web_server", config, no_args=True)


def web_config_of(pf: PartialFunction | None) -> dict[str, Any] | None:
    if pf is None or Flag.WEB not in pf.flags:
        return None
    return dict(pf.web_config)


__all__ = ["asgi_app", "fastapi_endpoint", "web_endpoint", "web_server", "wsgi_app"]
