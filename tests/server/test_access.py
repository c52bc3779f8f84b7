"""Least privilege (docs/security.md): every RPC method has a rule, and every principal is refused
outside its scope. Also the reproductions of issue 9's finding 1: a container acting as an operator."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import FakeContainer, FakeWorker, Harness, definition
from skylift._protocol import api
from skylift._protocol.rpc import RpcClient, RpcError
from skylift.server import access

# Who may call each method when every parameter names something OUTSIDE the caller's scope
# (another app, another app's call and inputs, another worker's tasks, exec requests and image builds):
#   a: the admin client   c: a container of an ordinary app   s: a container of a strict app   w: a worker
# A method missing here fails `test_every_principal_is_refused_outside_its_scope`: decide it in
# server/access.py's RULES and here.
EXPECTED: dict[str, str] = {
    "server.status": "a", "server.shutdown": "a",
    "task.list": "a", "task.get": "a", "task.logs": "a", "task.exec": "a", "task.stop": "a",
    "proxy_token.create": "a", "proxy_token.list": "a", "proxy_token.delete": "a",
    "schedule.pause": "a", "schedule.resume": "a", "schedule.list": "ac", "web.list": "ac",
    "app.create": "acs", "app.deploy_begin": "ac", "app.publish": "a", "app.heartbeat": "a",
    "app.disconnect": "a", "app.stop": "a", "app.list": "ac", "app.history": "ac", "app.lookup": "ac",
    "app.info": "ac", "app.logs": "a",
    "function.create": "a", "function.get": "ac", "function.info": "ac", "function.stats": "ac",
    "function.update_autoscaler": "a",
    "call.start": "ac", "call.run": "ac", "call.put_inputs": "ac", "call.close_inputs": "ac",
    "call.get_outputs": "ac", "call.get_gen_items": "ac", "call.cancel": "ac", "call.info": "ac",
    "object.get": "ac", "object.ephemeral": "ac", "object.list": "ac", "object.delete": "ac", "object.info": "ac",
    "object.rename": "ac",
    "secret.create": "ac", "secret.update": "ac",
    **{f"dict.{m}": "ac" for m in ("put", "get", "contains", "pop", "len", "clear", "scan")},
    **{f"queue.{m}": "ac" for m in ("put", "get", "peek", "len", "clear")},
    **{f"volume.{m}": "ac" for m in ("commit", "copy", "file", "listdir", "remove")},
    "volume.read_blocks": "acsw", "volume.write_blocks": "acs",
    "volume.manifest": "acw",
    "blob.missing": "acs", "blob.put": "acs", "blob.get": "acsw",
    "image.build": "acs", "image.status": "acs",
    # a container's own task: no parameter names anything else
    "container.init": "cs", "container.ready": "cs", "container.init_failed": "cs", "container.get_inputs": "cs",
    "container.put_outputs": "", "container.put_gen_items": "", "container.heartbeat": "",
    "container.web_send": "", "container.web_receive": "",
    "worker.register": "w", "worker.poll": "w", "worker.report": "", "worker.logs": "",
    "worker.exec_result": "", "worker.image_progress": "",
    # sandboxes: only of the container's own app (or apps it created); the relay only for a sandbox's container
    "sandbox.create": "a", "sandbox.list": "a", "sandbox.from_name": "a",
    **{f"sandbox.{m}": "a" for m in ("get", "set_tags", "wait", "read", "write_stdin", "exec", "terminate")},
    "sandbox.container_poll": "", "sandbox.put_output": "", "sandbox.process_exit": "",
}


@dataclass
class Side:
    """One app with a running container on its own worker, and the things it owns."""

    app_id: str
    app_name: str
    function_id: str
    call_id: str
    input: dict[str, Any]
    container: FakeContainer
    worker: FakeWorker
    exec_id: str = ""
    image_id: str = ""
    sandbox_id: str = ""


async def _worker(h: Harness, token: str, memory_mb: int) -> FakeWorker:
    rpc = await h.connect(api.ROLE_WORKER, token=token)
    got = await rpc.call("worker.register", {"hostname": "test", "runtimes": ["process"],
                                             "resources": {"cpu": 4, "memory_mb": memory_mb, "gpus": {}}})
    worker = FakeWorker(rpc, got["worker_id"])
    h._closing.append(worker)
    return worker


async def _deploy(h: Harness, admin: RpcClient, name: str, tag: str, *, strict: bool, **fields: Any) -> tuple[str, str]:
    app_id = (await admin.call("app.deploy_begin", {"name": name, "environment": "main",
                                                    "strict_containers": strict}))["app_id"]
    fid = (await admin.call("function.create", {"app_id": app_id, "definition": definition(tag, **fields)}))[
        "function_id"]
    await admin.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": {tag: fid}})
    return app_id, fid


async def _side(h: Harness, admin: RpcClient, worker: FakeWorker, name: str, *, strict: bool,
                **fields: Any) -> Side:
    app_id, fid = await _deploy(h, admin, name, "f", strict=strict, **fields)
    call_id = (await admin.call("call.start", {"function_id": fid, "inputs": [{"args": b"x"}],
                                               "invocation": "async"}))["call_id"]
    container = await h.started_container(worker)
    [inp] = await container.next_inputs()
    return Side(app_id, name, fid, call_id, inp, container, worker)


async def _exec(admin: RpcClient, side: Side) -> asyncio.Task[Any]:
    """An exec request sent to `side`'s worker, left waiting for its answer."""
    pending = asyncio.ensure_future(admin.call("task.exec", {"task_id": side.container.task_id, "argv": ["true"],
                                                             "timeout": 30}))
    side.exec_id = (await side.worker.next("exec_task"))["exec_id"]
    return pending


async def _image_id(admin: RpcClient, step: str) -> str:
    image = {"layers": [{"step": step, "args": {}, "files": []}]}
    return str((await admin.call("image.build", {"image": image}))["image_id"])


async def _build(admin: RpcClient, side: Side, step: str) -> None:
    side.image_id = await _image_id(admin, step)
    assert (await side.worker.next("build_image"))["image_id"] == side.image_id


@contextlib.asynccontextmanager
async def two_apps(h: Harness) -> Any:
    """App A (ordinary) runs on worker 1 (admin token); app B (strict_containers) on worker 2 (worker
    token). Each worker has an exec request and an image build of its own in progress."""
    admin = await h.client()
    w1 = await _worker(h, h.cp.token, memory_mb=1024)
    a = await _side(h, admin, w1, "app-a", strict=False)
    await _build(admin, a, "debian_slim")  # the only worker builds it
    w2 = await _worker(h, h.cp.worker_token, memory_mb=8192)
    b = Side("", "", "", "", {}, a.container, w2)
    await _build(admin, b, "micromamba")  # the worker with fewer containers builds it
    b = await _side(h, admin, w2, "app-b", strict=True, resources={"memory": 4096})  # fits only on worker 2
    b.image_id = (await _image_id(admin, "micromamba"))
    assert h.cp.tasks.get(a.container.task_id).worker_id == w1.worker_id  # type: ignore[union-attr]
    assert h.cp.tasks.get(b.container.task_id).worker_id == w2.worker_id  # type: ignore[union-attr]
    assert h.cp.images.builder(a.image_id) == w1.worker_id and h.cp.images.builder(b.image_id) == w2.worker_id
    execs = [await _exec(admin, a), await _exec(admin, b)]
    a.sandbox_id, b.sandbox_id = _sandbox_record(h, a.app_id), _sandbox_record(h, b.app_id)
    try:
        yield admin, a, b
    finally:
        for pending in execs:
            pending.cancel()


def _sandbox_record(h: Harness, app_id: str) -> str:
    """A sandbox of `app_id` as the control plane records it (no container: only its rules are tested)."""
    from skylift._protocol import ids
    from skylift.server.execution.sandboxes import Process, Sandbox

    sandbox_id = ids.new_id("sandbox")
    h.cp.sandbox_api.sandboxes.add(Sandbox(sandbox_id, app_id, "main", "sb", {}, 0.0, 0.0, 300.0, None,
                                           Process(sandbox_id, {})))
    return sandbox_id


def foreign(other: Side, volume_id: str) -> dict[str, Any]:
    """Parameters naming only `other`'s things, for every field any rule reads."""
    inp = other.input
    return {
        "app_id": other.app_id, "name": other.app_name, "app_name": other.app_name, "environment": "main",
        "tag": "f", "function_id": other.function_id, "call_id": other.call_id, "state": "ephemeral",
        "definition": definition("g", secret_ids=["st-someone-elses"]),
        "input_id": inp["input_id"], "attempt": inp["attempt"], "start": 0, "items": [{"input_id": inp["input_id"],
                                                                                       "messages": []}],
        "outputs": [{"input_id": inp["input_id"], "attempt": inp["attempt"], "status": api.STATUS_SUCCESS,
                     "data": b"forged"}],
        "running_input_ids": [inp["input_id"]],
        "events": [{"task_id": other.container.task_id, "state": "exited", "exit_code": 0}],
        "entries": [{"task_id": other.container.task_id, "stream": "stdout", "text": "forged"}],
        "exec_id": other.exec_id, "image_id": other.image_id, "volume_id": volume_id,
        "kind": "dict", "timeout": 0, "sandbox_id": other.sandbox_id,
    }


def test_every_route_has_a_rule(home):
    from skylift.server import ControlPlane

    routes = set(ControlPlane(home).routes())
    assert routes - set(access.RULES) == set(), "methods without an access rule: add them to server/access.py"
    assert set(access.RULES) - routes == set(), "rules for methods that don't exist"
    assert set(EXPECTED) == routes, f"decide {sorted(routes ^ set(EXPECTED))} in EXPECTED (and access.RULES)"


async def test_every_principal_is_refused_outside_its_scope(platform):
    async with platform() as h, two_apps(h) as (admin, a, b):
        volume_id = (await admin.call("object.get", {"kind": "volume", "name": "vol", "environment": "main",
                                                     "create_if_missing": True}))["object_id"]
        w1, w2 = a.worker, b.worker
        # (letter, the connection, its principal, parameters naming only what lies outside its scope)
        principals = [
            ("a", admin, access.Principal(access.ADMIN), foreign(b, volume_id)),
            ("c", a.container.rpc, _container(a, strict=False), foreign(b, volume_id)),
            ("s", b.container.rpc, _container(b, strict=True), foreign(a, volume_id)),
            ("w", w1.rpc, access.Principal(access.WORKER, worker_id=w1.worker_id), foreign(b, volume_id)),
            ("w", w2.rpc, access.Principal(access.WORKER, worker_id=w2.worker_id), foreign(a, volume_id)),
        ]
        routes = sorted(h.cp.routes())
        for letter, rpc, principal, params in principals:
            for method in routes:
                if letter in EXPECTED[method]:
                    # Decided without running the handler (many act: stop, delete, shut down).
                    access.authorize(principal, method, params, h.cp.facts)
                    continue
                with pytest.raises(RpcError) as err:
                    await rpc.call(method, params)
                assert err.value.code == "auth", (letter, method, err.value)
                assert repr(method) in err.value.message, err.value.message
                with pytest.raises(RpcError):  # the same decision, from the rule itself
                    access.authorize(principal, method, params, h.cp.facts)
        # Nothing got through: app B still runs and its input is still leased to its own container.
        assert h.cp.catalog.apps[b.app_id].running
        assert h.cp.calls.inputs[b.input["input_id"]].task is h.cp.tasks.get(b.container.task_id)


async def test_sandboxes_are_reached_only_from_their_app_and_their_container_reaches_nothing_else(platform):
    async with platform() as h, two_apps(h) as (_admin, a, b):
        own = {"sandbox_id": a.sandbox_id, "app_id": a.app_id, "app_name": a.app_name, "environment": "main"}
        container = _container(a, strict=False)
        for method in ("sandbox.create", "sandbox.list", "sandbox.from_name", "sandbox.get", "sandbox.exec",
                       "sandbox.read", "sandbox.write_stdin", "sandbox.wait", "sandbox.terminate"):
            access.authorize(container, method, own, h.cp.facts)  # its own app's sandboxes
        # A sandbox's own container: strict, and only its relay, its start and its volumes.
        inside = access.Principal(access.CONTAINER, environment="main", task_id=a.container.task_id,
                                  app_id=a.app_id, strict=True, sandbox=True)
        for method in ("sandbox.container_poll", "sandbox.put_output", "sandbox.process_exit", "container.init"):
            access.authorize(inside, method, own, h.cp.facts)
        for method in ("sandbox.get", "sandbox.exec", "sandbox.create", "sandbox.list", "call.start",
                       "function.get", "app.create", "object.get", "secret.create", "dict.get"):
            with pytest.raises(RpcError) as err:
                access.authorize(inside, method, own, h.cp.facts)
            assert "sandbox" in err.value.message
        strict = _container(b, strict=True)  # strict: its sandboxes get only its function's secrets
        theirs = {"sandbox_id": b.sandbox_id, "app_id": b.app_id, "environment": "main"}
        access.authorize(strict, "sandbox.exec", theirs, h.cp.facts)
        for method, extra in (("sandbox.exec", {"secret_ids": ["st-someone-elses"]}),
                              ("sandbox.create", {"definition": definition("sb", secret_ids=["st-someone-elses"])})):
            with pytest.raises(RpcError, match="st-someone-elses"):
                access.authorize(strict, method, {**theirs, **extra}, h.cp.facts)
        for method in ("sandbox.container_poll", "sandbox.put_output"):  # ordinary containers relay nothing
            with pytest.raises(RpcError):
                access.authorize(container, method, own, h.cp.facts)


def _container(side: Side, *, strict: bool) -> access.Principal:
    return access.Principal(access.CONTAINER, environment="main", task_id=side.container.task_id,
                            app_id=side.app_id, strict=strict)


# ---- issue 9, finding 1: a container's token acted as an operator of the whole platform ------------


async def test_a_container_cannot_stop_another_app_but_runs_apps_of_its_own(platform):
    async with platform() as h:
        admin = await h.client()
        worker = await h.worker()
        a = await _side(h, admin, worker, "app-a", strict=False)
        b_app, b_fid = await _deploy(h, admin, "app-b", "g", strict=False)
        rpc = a.container.rpc
        for params in ({"app_id": b_app}, {"name": "app-b", "environment": "main"}):
            with pytest.raises(RpcError) as err:
                await rpc.call("app.stop", params)
            assert err.value.code == "auth" and "not created by this container" in err.value.message
        for method, params in (("app.publish", {"app_id": b_app, "state": "deployed", "function_ids": {}}),
                               ("function.create", {"app_id": b_app, "definition": definition("evil")}),
                               ("function.update_autoscaler", {"function_id": b_fid, "min_containers": 50}),
                               ("app.disconnect", {"app_id": b_app})):
            with pytest.raises(RpcError) as err:
                await rpc.call(method, params)
            assert err.value.code == "auth", method
        assert h.cp.catalog.apps[b_app].running
        assert h.cp.catalog.functions[b_fid].autoscaler()["min_containers"] == 0
        # A workload of its workspace, as in Modal: it finds and calls the deployed function...
        got = await rpc.call("function.get", {"app_name": "app-b", "tag": "g", "environment": "main"})
        assert got["function_id"] == b_fid
        assert (await rpc.call("call.start", {"function_id": b_fid, "inputs": [{"args": b"y"}]}))["call_id"]
        # ...and runs an ephemeral app of its own (`with app.run():` inside a function), start to stop.
        own = (await rpc.call("app.create", {"name": "inner", "environment": "main"}))["app_id"]
        assert h.cp.catalog.apps[own].owner_task == a.container.task_id
        fid = (await rpc.call("function.create", {"app_id": own, "definition": definition("h")}))["function_id"]
        await rpc.call("app.publish", {"app_id": own, "state": "ephemeral", "function_ids": {"h": fid}})
        await rpc.call("app.heartbeat", {"app_id": own})
        await rpc.call("app.stop", {"app_id": own})
        assert own not in h.cp.catalog.apps
        # Deploying stays an operator's act, even for an app it created.
        mine = (await rpc.call("app.deploy_begin", {"name": "its-own", "environment": "main"}))["app_id"]
        with pytest.raises(RpcError) as err:
            await rpc.call("app.publish", {"app_id": mine, "state": "deployed", "function_ids": {}})
        assert err.value.code == "auth" and "operator" in err.value.message


async def test_outputs_and_items_only_for_inputs_leased_to_the_container(platform):
    async with platform() as h:
        admin = await h.client()
        worker = await h.worker()
        a = await _side(h, admin, worker, "app-a", strict=False)
        b = await _side(h, admin, worker, "app-b", strict=False)
        victim = b.input
        forged = {"input_id": victim["input_id"], "attempt": victim["attempt"], "status": api.STATUS_SUCCESS,
                  "data": b"forged"}
        for method, params in (("container.put_outputs", {"outputs": [forged]}),
                               ("container.put_gen_items", {"input_id": victim["input_id"],
                                                            "attempt": victim["attempt"], "start": 0,
                                                            "items": [b"forged"]}),
                               ("container.web_receive", {"input_id": victim["input_id"], "timeout": 0}),
                               ("container.web_send", {"input_id": victim["input_id"], "messages": []}),
                               ("container.heartbeat", {"running_input_ids": [victim["input_id"]]})):
            with pytest.raises(RpcError) as err:
                await a.container.rpc.call(method, params)
            assert err.value.code == "auth" and "not leased to this container" in err.value.message, method
        # A batch mixing in someone else's input is refused whole; its own inputs go through.
        mine = {"input_id": a.input["input_id"], "attempt": a.input["attempt"], "status": api.STATUS_SUCCESS}
        with pytest.raises(RpcError):
            await a.container.put_many([{**mine, "data": b"a"}, forged])
        await a.container.put_many([{**mine, "data": b"a"}])
        # The real container's output is the one FunctionCall.get returns.
        await b.container.put(victim, data=b"real")
        got = await admin.call("call.get_outputs", {"call_id": b.call_id, "timeout": 5})
        assert [o["data"] for o in got["outputs"]] == [b"real"]
        got = await admin.call("call.get_outputs", {"call_id": a.call_id, "timeout": 5})
        assert [o["data"] for o in got["outputs"]] == [b"a"]


async def test_a_lapsed_lease_still_lets_its_holder_answer(platform):
    """The access check does not change who wins a redelivered input (the dispatcher decides)."""
    async with platform() as h:
        admin = await h.client()
        worker = await h.worker()
        a = await _side(h, admin, worker, "app-a", strict=False)
        await admin.call("call.start", {"function_id": a.function_id, "inputs": [{"args": b"2"}],
                                        "invocation": "async"})
        # The pool must have been seen busy a while (its one container held its input, no output) before
        # the autoscaler judges a second container worth starting; this harness's clock moves only when told.
        h.advance(0.2)
        other = await h.started_container(worker)  # a second container for the second input
        [second] = await other.next_inputs()
        inp = h.cp.calls.inputs[a.input["input_id"]]
        h.cp.dispatcher.requeue_internal([inp], "test: its lease lapsed")
        await other.put(second)
        [again] = await other.next_inputs()
        assert again["input_id"] == a.input["input_id"]
        assert inp.held_by == [a.container.task_id, other.task_id]
        await a.container.heartbeat([again["input_id"]])  # its own (lapsed) lease: told to cancel, not refused
        await a.container.put(again, data=b"late")


async def test_workers_have_their_own_token_and_touch_only_their_tasks(platform):
    async with platform() as h:
        path = h.cp.home / "worker_token"
        assert path.stat().st_mode & 0o777 == 0o600 and path.read_text().strip() == h.cp.worker_token
        with pytest.raises(RpcError) as err:
            await h.connect(api.ROLE_CLIENT, token=h.cp.worker_token)
        assert err.value.code == "auth" and "worker token" in err.value.message
        admin = await h.client()
        w1 = await _worker(h, h.cp.worker_token, memory_mb=1024)
        a = await _side(h, admin, w1, "app-a", strict=False)
        w2 = await h.worker()  # the admin token still connects as a worker
        for method, params in (
                ("worker.report", {"events": [{"task_id": a.container.task_id, "state": "exited", "exit_code": 1}]}),
                ("worker.logs", {"entries": [{"task_id": a.container.task_id, "stream": "stdout", "text": "x"}]}),
                ("app.list", {"environment": "main"}), ("call.get_outputs", {"call_id": a.call_id})):
            with pytest.raises(RpcError) as err:
                await w2.rpc.call(method, params)
            assert err.value.code == "auth", method
        assert h.cp.tasks.get(a.container.task_id).alive  # type: ignore[union-attr]
        await w1.rpc.call("worker.logs", {"entries": [{"task_id": a.container.task_id, "stream": "stdout",
                                                        "text": "mine"}]})


async def test_strict_containers_reach_only_their_own_app(platform, home):
    async with platform() as h:
        admin = await h.client()
        worker = await h.worker()
        secret = (await admin.call("secret.create", {"name": "db", "values": {"K": "v"}, "environment": "main"}))
        other_app, other_fid = await _deploy(h, admin, "other", "g", strict=False)
        volumes = [(await admin.call("object.get", {"kind": "volume", "name": name, "environment": "main",
                                                    "create_if_missing": True}))["object_id"] for name in "vw"]
        s = await _side(h, admin, worker, "locked", strict=True, secret_ids=[secret["object_id"]],
                        volume_ids={"/data": volumes[0]})
        rpc = s.container.rpc
        assert h.cp.catalog.apps[s.app_id].strict_containers
        # Its own app: look up, call, read its calls.
        assert (await rpc.call("function.get", {"app_name": "locked", "tag": "f", "environment": "main"}))[
            "function_id"] == s.function_id
        call = await rpc.call("call.start", {"function_id": s.function_id, "inputs": [{"args": b"z"}]})
        await rpc.call("call.info", {"call_id": call["call_id"]})
        await rpc.call("volume.manifest", {"volume_id": volumes[0]})  # the volume its function mounts
        # Nothing else of the workspace.
        for method, params in (("function.get", {"app_name": "other", "tag": "g", "environment": "main"}),
                               ("call.start", {"function_id": other_fid, "inputs": [{"args": b"z"}]}),
                               ("object.get", {"kind": "secret", "name": "db", "environment": "main"}),
                               ("object.get", {"kind": "dict", "name": "d", "environment": "main",
                                               "create_if_missing": True}),
                               ("app.list", {"environment": "main"}),
                               ("volume.manifest", {"volume_id": volumes[1]})):
            with pytest.raises(RpcError) as err:
                await rpc.call(method, params)
            assert err.value.code == "auth", method
        # An app of its own may attach its function's secret, and no other.
        own = (await rpc.call("app.create", {"name": "sbx", "environment": "main"}))["app_id"]
        await rpc.call("function.create", {"app_id": own, "definition": definition(
            "h", secret_ids=[secret["object_id"]])})
        with pytest.raises(RpcError) as err:
            await rpc.call("function.create", {"app_id": own, "definition": definition("i", secret_ids=["st-x"])})
        assert err.value.code == "auth" and "st-x" in err.value.message
        assert other_app in h.cp.catalog.apps
    async with platform() as h:  # stored with the app: it survives a restart
        assert h.cp.catalog.apps[s.app_id].strict_containers
        assert not h.cp.catalog.apps[other_app].strict_containers
        admin = await h.client()  # App.lookup(create_if_missing=True) leaves the mode alone
        await admin.call("app.deploy_begin", {"name": "locked", "environment": "main"})
        assert h.cp.catalog.apps[s.app_id].strict_containers


def test_the_sdk_offers_strict_containers():
    import skylift
    from skylift.exception import InvalidError

    assert skylift.App("x", strict_containers=True).strict_containers
    assert not skylift.App("x").strict_containers
    with pytest.raises(InvalidError, match="strict_containers must be True or False"):
        skylift.App("x", strict_containers="yes")  # type: ignore[arg-type]
