"""Who may call what: each session's `Principal`, and the one table of rules checked before any handler.

`hello` (auth.py) turns a credential into a principal; `RpcServer` calls `authorize` with it
before every request, and `RULES` — one entry per RPC method — decides:

    admin      the admin token as a client: an operator; every client method
    container  a task's token: a workload of its workspace (Modal's semantics). It may look up and
               call deployed functions, read any call of the workspace, use named objects, secrets,
               volumes and blobs, build images, and run apps of its own (apps its session created);
               it is never an operator (no server, worker, task, token or schedule control, no
               deploy, stop or rescale of apps it did not create), and its data-plane methods name
               only inputs leased to it. An app deployed with `strict_containers=True` narrows its
               containers to their own app (its functions and calls), the volumes their function
               mounts and the secrets it attaches.
    worker     the worker token (or the admin token) as a worker: its own registration, and only the
               tasks, exec requests and image builds the control plane placed on it.

Rules read the platform only through `Lookup`, a narrow read-only view (access_facts.py
implements it), so they are pure decisions that tests can drive directly. A method without a
rule is refused (deny by default) and the table is checked complete against `routes()` by
tests/server/test_access.py. The teams issue (workspaces, roles, environments) adds fields to
`Principal` and one more check in `authorize`, not a check in each handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .._protocol.rpc import ErrorCode, RpcError

ADMIN = "admin"
CONTAINER = "container"
WORKER = "worker"
KINDS = (ADMIN, CONTAINER, WORKER)
DEFAULT_WORKSPACE = "main"


@dataclass(frozen=True)
class Principal:
    """Who a session is, fixed at `hello`: what `authorize` decides with."""

    kind: str  # ADMIN, CONTAINER or WORKER
    workspace: str = DEFAULT_WORKSPACE  # one workspace until the teams issue
    environment: str | None = None  # a container's app's environment; None: any
    task_id: str = ""  # containers
    worker_id: str = ""  # workers, once registered
    app_id: str = ""  # containers: the app they run in
    strict: bool = False  # containers of an app with strict_containers
    sandbox: bool = False  # a sandbox's container: only SANDBOX_METHODS (docs/sandboxes.md)

    def describe(self) -> str:
        if self.kind == CONTAINER:
            kind = ", sandbox" if self.sandbox else ", strict" if self.strict else ""
            return f"container {self.task_id} (app {self.app_id}{kind})"
        if self.kind == WORKER:
            return f"worker {self.worker_id or '(not registered)'}"
        return "the admin client"


# ---- what rules may read ----------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFacts:
    worker_id: str
    app_id: str
    pool_key: tuple[str, bytes]
    secret_ids: frozenset[str]
    volume_ids: frozenset[str]


@dataclass(frozen=True)
class InputFacts:
    pool_key: tuple[str, bytes]
    held_by: tuple[str, ...]  # task ids it was leased to, oldest first (since this control plane started)


@dataclass(frozen=True)
class SandboxFacts:
    app_id: str
    task_id: str  # its container ("" once it ended)


@dataclass(frozen=True)
class AppFacts:
    app_id: str
    name: str | None
    environment: str
    owner_task: str  # the container task whose session created it, "" for clients
    deployed: bool


class Lookup(Protocol):
    """The read-only view of the platform that rules decide with (in-memory lookups only)."""

    def task(self, task_id: str) -> TaskFacts | None: ...
    def input(self, input_id: str) -> InputFacts | None: ...
    def app(self, app_id: str) -> AppFacts | None: ...
    def running_app(self, name: str, environment: str) -> AppFacts | None: ...
    def function_app(self, function_id: str) -> str | None: ...
    def call_app(self, call_id: str) -> str | None: ...
    def exec_worker(self, exec_id: str) -> str | None: ...
    def image_builder(self, image_id: str) -> str | None: ...
    def sandbox(self, sandbox_id: str) -> SandboxFacts | None: ...


# A scope check: None if the request is within the principal's scope, else why not.
Check = Callable[[Principal, dict[str, Any], Lookup], str | None]


def _allow(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    return None


def _deny(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    return "strict containers reach only their own app"


ALLOW: Check = _allow
DENY: Check = _deny


@dataclass(frozen=True)
class Rule:
    """Who may call one method. `scope` narrows containers and workers; `strict` narrows strict
    containers further (deny unless stated). Admins pass every rule that lists them."""

    kinds: frozenset[str]
    why: str
    scope: Check = ALLOW
    strict: Check = DENY


# ---- scope checks -----------------------------------------------------------------------------


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    return value if isinstance(value, str) else ""


def _own_apps(principal: Principal, app: AppFacts | None) -> bool:
    return app is not None and (app.app_id == principal.app_id or app.owner_task == principal.task_id)


def _owned(principal: Principal, app: AppFacts | None) -> str | None:
    if app is not None and app.owner_task and app.owner_task == principal.task_id:
        return None
    what = f"app {app.app_id}" if app is not None else "that app"
    return f"{what} was not created by this container; only a client with the admin token may change it"


def _owned_app_id(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    return _owned(principal, lookup.app(_text(params, "app_id")))


def _owned_app_to_stop(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    app_id = _text(params, "app_id")
    if app_id:
        return _owned(principal, lookup.app(app_id))
    name = _text(params, "name")
    environment = _text(params, "environment") or principal.environment or ""
    return _owned(principal, lookup.running_app(name, environment))


def _publish(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    if params.get("state") == "deployed":
        return "deploying is an operator's act; containers publish only ephemeral or detached apps"
    return _owned_app_id(principal, params, lookup)


def _function_owned_app(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    app_id = lookup.function_app(_text(params, "function_id"))
    return _owned(principal, lookup.app(app_id) if app_id else None)


def _create_function(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    return _owned_app_id(principal, params, lookup)


def _strict_create_function(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    """A strict container's own app may attach only the secrets and volumes its function has."""
    task = lookup.task(principal.task_id)
    definition = params.get("definition")
    if task is None or not isinstance(definition, dict):
        return None  # the handler rejects a malformed definition
    secrets = definition.get("secret_ids") or []
    volumes = definition.get("volume_ids") or {}
    extra = sorted({s for s in secrets if isinstance(s, str)} - task.secret_ids)
    if isinstance(volumes, dict):
        extra += sorted({v for v in volumes.values() if isinstance(v, str)} - task.volume_ids)
    if extra:
        return f"it attaches {', '.join(extra)}, which this container's function does not"
    return None


def _strict_named_app(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    own = lookup.app(principal.app_id)
    name = _text(params, "app_name") or _text(params, "name")
    if own is not None and own.name and name == own.name:
        return None
    return f"strict containers look up only their own app ({own.name if own else principal.app_id!r})"


def _strict_function(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    app_id = lookup.function_app(_text(params, "function_id"))
    if app_id and _own_apps(principal, lookup.app(app_id)):
        return None
    return "strict containers call only the functions of their own app"


def _strict_call(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    app_id = lookup.call_app(_text(params, "call_id"))
    if app_id and _own_apps(principal, lookup.app(app_id)):
        return None
    return "strict containers reach only the calls of their own app"


def _strict_own_app_logs(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    return None if _own_apps(principal, lookup.app(_text(params, "app_id"))) else "not this container's app"


def _strict_volume(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    task = lookup.task(principal.task_id)
    if task is not None and _text(params, "volume_id") in task.volume_ids:
        return None
    return "strict containers use only the volumes their function mounts"


def _input_ids(*paths: str) -> Callable[[dict[str, Any]], Iterable[Any]]:
    """Input ids named by a request: "input_id" (a field) or "outputs[].input_id" (a list's field)."""

    def extract(params: dict[str, Any]) -> Iterable[Any]:
        for path in paths:
            if "[]." in path:
                field, sub = path.split("[].")
                items = params.get(field)
                if isinstance(items, list):
                    yield from (item.get(sub) for item in items if isinstance(item, dict))
            elif "[]" in path:
                items = params.get(path[:-2])
                if isinstance(items, list):
                    yield from items
            elif params.get(path) is not None:
                yield params[path]

    return extract


def leased(*paths: str) -> Check:
    """Every input id the request names must be one leased to this container.

    An input it once held but whose lease lapsed still passes (the handler decides whether a late
    output counts); so does an id the control plane no longer knows (the handler ignores it) and an
    input of its own pool that nobody has held since a restart (its container from before the
    restart is finishing it).
    """
    extract = _input_ids(*paths)

    def check(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
        task: TaskFacts | None = None
        for input_id in extract(params):
            if not isinstance(input_id, str):
                continue  # the handler answers malformed params
            facts = lookup.input(input_id)
            if facts is None or principal.task_id in facts.held_by:
                continue
            if not facts.held_by:
                task = task or lookup.task(principal.task_id)
                if task is not None and task.pool_key == facts.pool_key:
                    continue
            return f"input {input_id} is not leased to this container"
        return None

    return check


def placed(*paths: str) -> Check:
    """Every task id the request names must be placed on this worker (unknown ids pass: the
    handler tells the worker to stop a container the control plane doesn't know)."""
    extract = _input_ids(*paths)

    def check(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
        for task_id in extract(params):
            if not isinstance(task_id, str):
                continue
            task = lookup.task(task_id)
            if task is not None and task.worker_id != principal.worker_id:
                return f"task {task_id} is not placed on this worker"
        return None

    return check


def _registered(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    return None if principal.worker_id else "call worker.register first"


def _exec_sent_here(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    worker = lookup.exec_worker(_text(params, "exec_id"))
    if worker is None or worker == principal.worker_id:
        return None  # unknown: already answered or timed out; the handler ignores it
    return f"exec {_text(params, 'exec_id')} was sent to another worker"


def _build_sent_here(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    builder = lookup.image_builder(_text(params, "image_id"))
    if builder is None or builder == principal.worker_id:
        return None  # no build in progress: the handler ignores a late report of a finished one
    return f"image {_text(params, 'image_id')} is being built by another worker"


def _sandbox_app(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    """Sandboxes in the container's own app or in apps it created."""
    if _own_apps(principal, lookup.app(_text(params, "app_id"))):
        return None
    return "a container creates and lists sandboxes only in its own app or in apps it created"


def _sandbox_create(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    """Like `_sandbox_app`; without an app_id the handler uses a container's own app."""
    if not _text(params, "app_id"):
        return None
    return _sandbox_app(principal, params, lookup)


def _sandbox_named_app(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    environment = _text(params, "environment") or principal.environment or ""
    if _own_apps(principal, lookup.running_app(_text(params, "app_name"), environment)):
        return None
    return "a container finds sandboxes only in its own app or in apps it created"


def _sandbox_reachable(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    facts = lookup.sandbox(_text(params, "sandbox_id"))
    if facts is None:
        return None  # the handler answers NotFound
    if _own_apps(principal, lookup.app(facts.app_id)):
        return None
    return f"sandbox {_text(params, 'sandbox_id')} is not in this container's app or an app it created"


def _strict_exec_secrets(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    """A strict container's exec may attach only the secrets its own function has."""
    task = lookup.task(principal.task_id)
    secrets = params.get("secret_ids") or []
    extra = sorted({s for s in secrets if isinstance(s, str)} - (task.secret_ids if task is not None else frozenset()))
    return f"it attaches {', '.join(extra)}, which this container's function does not" if extra else None


def _is_sandbox(principal: Principal, params: dict[str, Any], lookup: Lookup) -> str | None:
    return None if principal.sandbox else "only a sandbox's own container relays its processes"


def sandbox_rule(why: str, scope: Check, strict: Check = ALLOW) -> Rule:
    """Admins, and containers within `scope`; strict containers too (their own app's sandboxes)."""
    return Rule(_AC, why, scope, strict)


# What a sandbox's own container may call: its start, its processes' stdio, and the volumes it
# mounts (committed at exit). Its token is within reach of the sandbox's commands, so it is
# worth nothing else: no functions, apps, objects or other sandboxes.
SANDBOX_METHODS = frozenset({
    "container.init", "container.ready", "container.init_failed",
    "sandbox.container_poll", "sandbox.put_output", "sandbox.process_exit",
    "volume.manifest", "volume.read_blocks", "volume.write_blocks", "volume.commit", "blob.get",
})


# ---- the table --------------------------------------------------------------------------------

_A = frozenset({ADMIN})
_AC = frozenset({ADMIN, CONTAINER})
_ACW = frozenset({ADMIN, CONTAINER, WORKER})
_C = frozenset({CONTAINER})
_W = frozenset({WORKER})


def admin_only(why: str) -> Rule:
    return Rule(_A, why)


def workload(why: str, scope: Check = ALLOW, strict: Check = DENY) -> Rule:
    """Admins, and containers within `scope` (strict ones also within `strict`)."""
    return Rule(_AC, why, scope, strict)


def own_task(why: str, scope: Check = ALLOW) -> Rule:
    """Containers only, about their own task (the handler uses the session's task)."""
    return Rule(_C, why, scope, ALLOW)


def worker_rule(why: str, scope: Check = _registered) -> Rule:
    return Rule(_W, why, scope)


RULES: dict[str, Rule] = {
    # --- operators only
    "server.status": admin_only("the server's internals (workers, pids) are for operators"),
    "server.shutdown": admin_only("stopping the platform is an operator's act"),
    "task.list": admin_only("containers of every app: an operator's view"),
    "task.get": admin_only("a container's record: an operator's view"),
    "task.logs": admin_only("any container's logs: an operator's view"),
    "task.exec": admin_only("running commands in containers is an operator's act"),
    "task.stop": admin_only("stopping containers is an operator's act"),
    "proxy_token.create": admin_only("web proxy tokens are credentials"),
    "proxy_token.list": admin_only("web proxy tokens are credentials"),
    "proxy_token.delete": admin_only("web proxy tokens are credentials"),
    "schedule.pause": admin_only("pausing a deployed schedule is an operator's act"),
    "schedule.resume": admin_only("resuming a deployed schedule is an operator's act"),
    # --- apps: containers run apps of their own, never operate others
    "app.create": workload("a container may run an ephemeral app of its own (`with app.run()`)", strict=ALLOW),
    "app.deploy_begin": workload("App.lookup(create_if_missing=True); it publishes only apps it created"),
    "app.publish": workload("only apps this container created, never as a deploy", _publish, ALLOW),
    "app.heartbeat": workload("keeps alive only apps this container created", _owned_app_id, ALLOW),
    "app.disconnect": workload("ends only apps this container created", _owned_app_id, ALLOW),
    "app.stop": workload("stops only apps this container created", _owned_app_to_stop, ALLOW),
    "app.list": workload("reading the workspace's apps, as Modal's containers may"),
    "app.info": workload("an app's state and functions (App.info)", strict=_strict_own_app_logs),
    "app.history": workload("reading a deployed app's versions"),
    "app.lookup": workload("looking up deployed apps of the workspace", strict=_strict_named_app),
    "app.logs": workload("logs of its own app and of apps it runs", _strict_own_app_logs, ALLOW),
    "function.create": workload("only on apps this container created", _create_function, _strict_create_function),
    "function.get": workload("Function.from_name of the workspace's deployed functions", strict=_strict_named_app),
    "function.info": workload("Function.from_id and Function.info", strict=_strict_function),
    "function.stats": workload("a function's queue and runners", strict=_strict_function),
    "function.update_autoscaler": workload("rescales only functions of apps this container created",
                                           _function_owned_app, ALLOW),
    # --- calls: any call of the workspace (FunctionCall.from_id / .get / .cancel)
    "call.start": workload("calling deployed functions", strict=_strict_function),
    "call.run": workload("calling deployed functions", strict=_strict_function),
    "call.put_inputs": workload("feeding a map it can reach", strict=_strict_call),
    "call.close_inputs": workload("closing a map it can reach", strict=_strict_call),
    "call.get_outputs": workload("FunctionCall.get of any call of the workspace", strict=_strict_call),
    "call.get_gen_items": workload("reading a generator call of the workspace", strict=_strict_call),
    "call.cancel": workload("FunctionCall.cancel of a call of the workspace", strict=_strict_call),
    "call.info": workload("a call's state", strict=_strict_call),
    # --- named objects, secrets, storage (Modal's semantics; strict containers get their function's)
    "object.get": workload("from_name of dicts, queues, volumes and secrets of the workspace"),
    "object.ephemeral": workload("ephemeral objects of its own"),
    "object.list": workload("listing the workspace's objects"),
    "object.delete": workload("deleting the workspace's named objects, as Modal's containers may"),
    "object.info": workload("an object's metadata"),
    "object.rename": workload("renaming the workspace's named objects, as Modal's containers may"),
    "secret.update": workload("Secret.update of the workspace's named secrets, as Modal's containers may"),
    "secret.create": workload("Secret.from_dict for a sandbox or function it runs"),
    "dict.put": workload("Dicts of the workspace"),
    "dict.get": workload("Dicts of the workspace"),
    "dict.contains": workload("Dicts of the workspace"),
    "dict.pop": workload("Dicts of the workspace"),
    "dict.len": workload("Dicts of the workspace"),
    "dict.clear": workload("Dicts of the workspace"),
    "dict.scan": workload("Dicts of the workspace"),
    "queue.put": workload("Queues of the workspace"),
    "queue.get": workload("Queues of the workspace"),
    "queue.peek": workload("Queues of the workspace"),
    "queue.len": workload("Queues of the workspace"),
    "queue.clear": workload("Queues of the workspace"),
    "volume.commit": workload("Volumes of the workspace (strict: the ones its function mounts)", strict=_strict_volume),
    "volume.copy": workload("Volumes of the workspace", strict=_strict_volume),
    "volume.file": workload("Volumes of the workspace", strict=_strict_volume),
    "volume.listdir": workload("Volumes of the workspace", strict=_strict_volume),
    "volume.read_blocks": Rule(_ACW, "blocks by content hash (the manifest, which names them, is scoped): "
                                     "workers fetch the blocks of the volumes they mount", ALLOW, ALLOW),
    "volume.remove": workload("Volumes of the workspace", strict=_strict_volume),
    "volume.write_blocks": workload("content-addressed blocks; only a scoped commit makes them a file", strict=ALLOW),
    "volume.manifest": Rule(_ACW, "containers and workers mount volumes (contents travel by hash)",
                            ALLOW, _strict_volume),
    "blob.missing": workload("uploading mounts of an app it runs (content-addressed)", strict=ALLOW),
    "blob.put": workload("uploading mounts of an app it runs (content-addressed)", strict=ALLOW),
    "blob.get": Rule(_ACW, "content-addressed: knowing the sha256 is the capability", ALLOW, ALLOW),
    "image.build": workload("images for apps it runs (sandboxes, `with app.run()`)", strict=ALLOW),
    "image.status": workload("following an image build", strict=ALLOW),
    "schedule.list": workload("reading the workspace's schedules"),
    "web.list": workload("reading the workspace's web endpoints"),
    # --- sandboxes (docs/sandboxes.md): of the container's own app or apps it created
    "sandbox.create": sandbox_rule("sandboxes of its own app (the default) or of apps it created", _sandbox_create,
                                   _strict_create_function),
    "sandbox.list": sandbox_rule("sandboxes of its own app (the default) or of apps it created", _sandbox_create),
    "sandbox.from_name": sandbox_rule("sandboxes of its own app or of apps it created", _sandbox_named_app),
    **{f"sandbox.{m}": sandbox_rule("sandboxes of its own app or of apps it created", _sandbox_reachable)
       for m in ("get", "set_tags", "wait", "read", "write_stdin", "terminate")},
    "sandbox.exec": sandbox_rule("sandboxes of its own app or of apps it created", _sandbox_reachable,
                                 _strict_exec_secrets),
    "sandbox.container_poll": own_task("a sandbox's container: its stdin and execs", _is_sandbox),
    "sandbox.put_output": own_task("a sandbox's container: its processes' output", _is_sandbox),
    "sandbox.process_exit": own_task("a sandbox's container: its processes' ends", _is_sandbox),
    # --- a container's own task and the inputs leased to it
    "container.init": own_task("its own definition"),
    "container.ready": own_task("its own readiness"),
    "container.init_failed": own_task("its own start-up failure"),
    "container.get_inputs": own_task("leases inputs of its own pool"),
    "container.put_outputs": own_task("outputs only for inputs leased to it (its next poll leases its own pool's)",
                                      leased("outputs[].input_id")),
    "container.put_gen_items": own_task("generator items only for inputs leased to it", leased("input_id")),
    "container.heartbeat": own_task("renews only its own leases", leased("running_input_ids[]")),
    "container.web_send": own_task("answers only web requests leased to it", leased("input_id", "items[].input_id")),
    "container.web_receive": own_task("reads only web requests leased to it", leased("input_id")),
    # --- a worker: itself and what was placed on it
    "worker.register": worker_rule("registers itself", ALLOW),
    "worker.poll": worker_rule("its own commands"),
    "worker.report": worker_rule("events only of tasks placed on it", placed("events[].task_id")),
    "worker.logs": worker_rule("log lines only of tasks placed on it", placed("entries[].task_id")),
    "worker.exec_result": worker_rule("answers only exec requests sent to it", _exec_sent_here),
    "worker.image_progress": worker_rule("reports only builds sent to it", _build_sent_here),
}


def authorize(principal: Principal | None, method: str, params: dict[str, Any], lookup: Lookup) -> None:
    """Raise RpcError(AUTH) unless `principal` may make this request; the one check before handlers."""
    if principal is None:
        raise RpcError(ErrorCode.AUTH, f"{method!r} before hello")
    rule = RULES.get(method)
    if rule is None:  # deny by default: a method without a rule is a bug, refused until it has one
        raise RpcError(ErrorCode.AUTH, f"{method!r} has no access rule (server.access.RULES); refused")
    if principal.kind not in rule.kinds:
        raise RpcError(ErrorCode.AUTH, f"{principal.describe()} may not call {method!r}: {_who(rule)} may "
                                       f"({rule.why})")
    if principal.kind == ADMIN:
        return  # the teams issue: the admin's role and environments are checked here
    if principal.sandbox and method not in SANDBOX_METHODS:
        raise RpcError(ErrorCode.AUTH, f"{principal.describe()} may not call {method!r}: a sandbox's container "
                                       "reaches only its own processes and volumes")
    reason = rule.scope(principal, params, lookup)
    if reason is None and principal.strict:
        reason = rule.strict(principal, params, lookup)
    if reason is not None:
        raise RpcError(ErrorCode.AUTH, f"{principal.describe()} may not call {method!r}: {reason}")


def _who(rule: Rule) -> str:
    names = {ADMIN: "clients with the admin token", CONTAINER: "containers", WORKER: "workers"}
    return " and ".join(names[k] for k in KINDS if k in rule.kinds) or "nobody"
