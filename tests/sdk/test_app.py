"""The SDK's definition-time behaviour: decorators, options, errors. No platform needed."""

from __future__ import annotations

import pytest

import skylift as modal
from skylift.exception import ExecutionError, InvalidError


def test_function_local_and_registration() -> None:
    app = modal.App("t-app")

    @app.function(cpu=2, memory=512, timeout=10)
    def square(x: int) -> int:
        return x * x

    assert square.local(4) == 16
    assert app.registered_functions == {"square": square}
    assert square._options["timeout"] == 10
    assert square._options["resources"]["cpu"] == 2.0


def test_remote_outside_a_run_names_the_fix() -> None:
    app = modal.App("t-app2")

    @app.function()
    def f() -> None: ...

    with pytest.raises(ExecutionError, match=r"with app.run\(\)"):
        f.remote()


def test_generator_function_detected_and_rejects_remote() -> None:
    app = modal.App("t-gen")

    @app.function()
    def gen(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    assert gen.is_generator
    with pytest.raises(InvalidError, match="remote_gen"):
        gen.remote(3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": None}, "timeout"),
        ({"cpu": -1}, "cpu"),
        ({"gpu": "Z999"}, "Z999"),
        ({"min_containers": 3, "max_containers": 1}, "max_containers"),
        ({"scaledown_window": 1}, "scaledown_window"),
        ({"retries": 99}, "retries"),
        ({"bogus": 1}, "bogus"),
        ({"mounts": ["x"]}, "add_local"),
        ({"env": {"A": 1}}, "env"),
    ],
)
def test_bad_options_are_clear_errors(options: dict[str, object], message: str) -> None:
    app = modal.App("t-bad")
    with pytest.raises(InvalidError, match=message):
        app.function(**options)(lambda: None)


def test_deprecated_aliases_warn_and_apply() -> None:
    app = modal.App("t-dep")
    with pytest.warns(DeprecationWarning, match="min_containers"):
        f = app.function(keep_warm=2)(_module_level)
    assert f._options["autoscaler"]["min_containers"] == 2
    with pytest.warns(DeprecationWarning, match="scaledown_window"):
        g = app.function(container_idle_timeout=30, name="g")(_module_level)
    assert g._options["autoscaler"]["scaledown_window"] == 30
    with pytest.warns(DeprecationWarning, match="concurrent"):
        h = app.function(allow_concurrent_inputs=5, name="h")(_module_level)
    assert h._options["concurrency"] == {"max_inputs": 5, "target_inputs": None}
    with pytest.warns(DeprecationWarning, match="App"):
        modal.Stub("old")


def _module_level() -> int:
    return 1


def test_concurrent_and_batched_decorators() -> None:
    app = modal.App("t-conc")

    @app.function()
    @modal.concurrent(max_inputs=10, target_inputs=5)
    def c(x: int) -> int:
        return x

    assert c._options["concurrency"] == {"max_inputs": 10, "target_inputs": 5}

    @app.function()
    @modal.batched(max_batch_size=4, wait_ms=100)
    def b(xs: list[int]) -> list[int]:
        return xs

    assert b._options["batching"] == {"max_batch_size": 4, "wait_ms": 100}
    with pytest.raises(InvalidError):
        modal.concurrent(max_inputs=0)
    with pytest.raises(InvalidError, match="parentheses"):
        modal.method(lambda self: None)  # type: ignore[arg-type]


def test_cls_parameters_hooks_and_local() -> None:
    app = modal.App("t-cls")

    @app.cls()
    class Model:
        size: int = modal.parameter(default=2)
        name: str = modal.parameter()

        @modal.enter()
        def load(self) -> None:
            self.loaded = self.size * 10

        @modal.method()
        def predict(self, x: int) -> int:
            return self.loaded + x

        def helper(self) -> None: ...

    obj = Model(name="a")
    assert obj.predict.local(1) == 21
    assert Model(name="a", size=3).predict.local(1) == 31
    with pytest.raises(InvalidError, match=r"missing the required parameter 'name'"):
        Model()
    with pytest.raises(InvalidError, match="unknown parameter"):
        Model(name="a", colour="red")
    with pytest.raises(InvalidError, match="must be int"):
        Model(name="a", size="big")
    with pytest.raises(InvalidError, match="instance"):
        Model.predict.remote(1)  # type: ignore[attr-defined]
    with pytest.raises(InvalidError, match=r"@modal\.method"):
        Model(name="a").helper  # noqa: B018
    assert obj._encoded == Model(name="a", size=2)._encoded


def test_snap_enter_requires_memory_snapshot() -> None:
    app = modal.App("t-snap")
    with pytest.raises(InvalidError, match="enable_memory_snapshot"):
        @app.cls()
        class C:
            @modal.enter(snap=True)
            def load(self) -> None: ...

            @modal.method()
            def m(self) -> None: ...


def test_non_global_function_needs_serialized() -> None:
    from skylift._definition import function_code_location

    app = modal.App("t-local")

    @app.function()
    def inner() -> None: ...

    with pytest.raises(InvalidError, match="serialized=True"):
        function_code_location(inner)
    fn = app.function(serialized=True, name="inner2")(lambda: 3)
    module, _, data = function_code_location(fn)
    assert module is None and data


def test_app_include_and_names() -> None:
    a = modal.App("a")
    b = modal.App("b")

    @b.function()
    def g() -> None: ...

    a.include(b)
    assert "g" in a.registered_functions
    with pytest.raises(InvalidError, match="name"):
        modal.App("bad name!")


def test_from_name_rejects_method_syntax() -> None:
    with pytest.raises(InvalidError, match=r"Cls\.from_name"):
        modal.Function.from_name("app", "Model.predict")
    with pytest.raises(InvalidError, match="fc-"):
        modal.FunctionCall.from_id("nope")


def test_is_local_outside_containers() -> None:
    assert modal.is_local()
    assert modal.current_input_id() is None


def test_a_cls_definition_names_its_parameters_and_the_default_set() -> None:
    from skylift._definition import build_definition
    from skylift._serialization import decode_params

    app = modal.App("params-app")

    @app.cls(serialized=True)
    class Defaults:
        size: int = modal.parameter(default=3)

        @modal.method()
        def run(self) -> int:
            return self.size

    @app.cls(serialized=True)
    class Required:
        name: str = modal.parameter()

        @modal.method()
        def run(self) -> str:
            return self.name

    defaults = build_definition(Defaults._service, "im-x", [])
    assert defaults["parameters"] == ["size"] and decode_params(defaults["default_params"]) == {"size": 3}
    required = build_definition(Required._service, "im-x", [])
    assert required["parameters"] == ["name"] and required["default_params"] is None


def test_snap_true_without_snapshots_is_refused_even_without_methods() -> None:
    app = modal.App("snap-app")
    with pytest.raises(InvalidError, match="enable_memory_snapshot=True"), pytest.warns(UserWarning):
        @app.cls()
        class NoMethods:
            @modal.enter(snap=True)
            def load(self) -> None:
                pass


def test_update_autoscaler_checks_its_values_before_calling_anyone() -> None:
    app = modal.App("autoscaler-app")

    @app.function(serialized=True)
    def f() -> None:
        pass

    with pytest.raises(InvalidError, match="scaledown_window=1"):
        f.update_autoscaler(scaledown_window=1)
    with pytest.raises(InvalidError, match="max_containers=1 is lower than min_containers=2"):
        f.update_autoscaler(min_containers=2, max_containers=1)
