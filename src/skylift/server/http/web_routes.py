"""Which web endpoint a request is for: labels, URLs and the route table.

Every web function (or web method of a class) of a running app has a label, built like Modal's
host labels: `<environment>-<app>-<function>` (`<environment>-<app>-<class>-<method>`) slugified
to `[a-z0-9-]`, or `<environment>-<label>` with `label=`; ephemeral apps (`skylift run`,
`skylift serve`) add `-dev`. A label longer than 63 characters becomes its first 56 characters, a
dash and 6 hex digits of its sha256 (Modal's rule), so it stays a valid DNS label.

The gateway finds an endpoint by host (`<label>.localhost:PORT`, or `<label>.<domain>` behind a
proxy) or by the first path segment (`http://127.0.0.1:PORT/<label>/...`). The table is derived
from the catalog and rebuilt when a lookup misses or finds a stale entry, so nothing has to tell
it about deploys and stops. Among ephemeral apps the newest wins a label (a newer `serve` takes
the URL over, as in Modal); two deployed apps can't share one (`check_label` refuses the deploy).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ..execution.catalog import AppEntry, AppState, Catalog, FunctionEntry
from ..params import invalid

MAX_LABEL = 63
_SLUG_RE = re.compile(r"[^a-z0-9-]+")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DEV_SUFFIX = "-dev"


def slugify(text: str) -> str:
    slug = _SLUG_RE.sub("-", text.lower())
    return re.sub("-{2,}", "-", slug).strip("-")


def shorten(label: str) -> str:
    """Modal's rule for labels longer than a DNS label may be."""
    if len(label) <= MAX_LABEL:
        return label
    return f"{label[:56]}-{hashlib.sha256(label.encode()).hexdigest()[:6]}"


def endpoint_label(app: AppEntry, tag: str, method: str | None, web: dict[str, Any]) -> str:
    """The label of one endpoint: what both its host name and its path prefix are made of."""
    custom = web.get("label")
    if custom:
        base = str(custom)
    else:
        name = app.name or app.app_id
        base = slugify(f"{name}-{tag}-{method}" if method else f"{name}-{tag}")
    label = slugify(f"{app.environment}-{base}")
    if app.state is not AppState.DEPLOYED:
        label += DEV_SUFFIX
    return shorten(label)


def web_endpoints(definition: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """method name (None for a function) → web settings, for every web endpoint of a definition."""
    found: dict[str | None, dict[str, Any]] = {}
    web = definition.get("web")
    if isinstance(web, dict) and web:
        found[None] = web
    for name, meta in (definition.get("methods") or {}).items():
        if isinstance(meta, dict) and isinstance(meta.get("web"), dict):
            found[name] = meta["web"]
    return found


@dataclass(frozen=True)
class Route:
    label: str
    function_id: str
    method: str | None
    web: dict[str, Any]
    # What the label was computed from: while these are the same objects, the label still holds.
    definition: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    state: AppState = AppState.DEPLOYED

    @property
    def requires_proxy_auth(self) -> bool:
        return bool(self.web.get("requires_proxy_auth"))


def _live_functions(catalog: Catalog) -> list[FunctionEntry]:
    live = []
    for function in catalog.functions.values():
        app = function.app
        if not app.running or not app.function_ids:
            continue  # not published yet (or stopped)
        if app.function_ids.get(function.tag) != function.function_id:
            continue  # a with_options variant, or retired by a redeploy
        live.append(function)
    return live


class Routes:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._table: dict[str, Route] = {}

    def rebuild(self) -> None:
        table: dict[str, tuple[Route, tuple[bool, float]]] = {}
        for function in _live_functions(self.catalog):
            app = function.app
            # Deployed apps first, then the newest: that one keeps a contested label.
            rank = (app.state is AppState.DEPLOYED, app.created_at)
            for method, web in web_endpoints(function.definition).items():
                label = endpoint_label(app, function.tag, method, web)
                held = table.get(label)
                if held is None or held[1] < rank:
                    table[label] = (Route(label, function.function_id, method, web, function.definition, app.state),
                                    rank)
        self._table = {label: route for label, (route, _) in table.items()}

    def _valid(self, route: Route) -> bool:
        function = self.catalog.functions.get(route.function_id)
        if function is None or not function.app.running:
            return False
        if function.app.function_ids.get(function.tag) != function.function_id:
            return False  # retired by a redeploy
        if function.definition is route.definition and function.app.state is route.state:
            return True  # the hot path: nothing it depends on changed
        web = web_endpoints(function.definition).get(route.method)
        return web is not None and endpoint_label(function.app, function.tag, route.method, web) == route.label

    def find(self, label: str) -> Route | None:
        route = self._table.get(label)
        if route is not None and self._valid(route):
            return route
        self.rebuild()
        return self._table.get(label)

    def all(self) -> list[Route]:
        self.rebuild()
        return list(self._table.values())


def check_labels(catalog: Catalog, app: AppEntry, definition: dict[str, Any], method_name: str) -> None:
    """Refuse a definition whose endpoint labels are invalid, or taken by another deployed endpoint."""
    tag = definition.get("tag")
    for method, web in web_endpoints(definition).items():
        custom = web.get("label")
        if custom is not None and (not isinstance(custom, str) or not _LABEL_RE.match(custom)):
            raise invalid(method_name, f"web endpoint {tag}: label {custom!r} is invalid; use 1-63 lowercase "
                                       "letters, digits or '-', starting and ending with a letter or digit")
        label = endpoint_label(app, str(tag), method, web)
        where = f"{tag}.{method}" if method else str(tag)
        for function in _live_functions(catalog) + [f for f in catalog.functions_of(app.app_id)]:
            other_app = function.app
            if other_app is app and function.tag == tag:
                continue  # this function's own previous version
            if other_app is not app and not (other_app.state is AppState.DEPLOYED and app.state is AppState.DEPLOYED):
                continue  # an ephemeral app simply takes the label over
            for other_method, other_web in web_endpoints(function.definition).items():
                if endpoint_label(other_app, function.tag, other_method, other_web) == label:
                    other = f"{function.tag}.{other_method}" if other_method else function.tag
                    raise invalid(method_name, f"web endpoint {where}: its label {label!r} is already used by "
                                               f"{other} of {other_app.label} in environment "
                                               f"{app.environment!r}; give one of them another label=")
