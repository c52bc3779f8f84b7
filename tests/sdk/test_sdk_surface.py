"""Issue 11 item 4/5 surface that needs no platform: modal.types, Probe, config, experimental's
errors, option rules (gpu=False, env None, with_options(timeout=None)), mount options and lookups."""

from __future__ import annotations

import pytest

import skylift as modal
from skylift import _introspection, _options, experimental
from skylift._serialization import decode_params, encode_params
from skylift.cli._import import import_ref
from skylift.exception import InvalidError
from skylift.functions import _with_declared_defaults


def test_probe_value_class() -> None:
    assert modal.Probe.with_tcp(8080).tcp_port == 8080
    probe = modal.Probe.with_exec("sh", "-c", "true", interval_ms=50)
    assert probe.exec_argv == ("sh", "-c", "true") and probe.interval_ms == 50
    for bad in (lambda: modal.Probe.with_tcp(0), lambda: modal.Probe.with_exec(),
                lambda: modal.Probe.with_tcp(80, interval_ms=0), lambda: modal.Probe()):
        with pytest.raises(InvalidError):
            bad()


def test_config_reads_modal_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from skylift.config import Config, config

    monkeypatch.setenv("MODAL_TRACEBACK", "1")
    monkeypatch.setenv("SKYLIFT_LOGS_TIMEOUT", "3.5")
    assert config["traceback"] is True and config.get("logs_timeout") == 3.5
    assert config.get("loglevel") == "WARNING" and isinstance(config, Config)
    monkeypatch.setenv("MODAL_ENVIRONMENT", "dev")
    assert config["environment"] == "dev" and "environment" in config.to_dict()
    with pytest.raises(KeyError, match="no setting"):
        config.get("nope")
    with pytest.raises(modal.exception.NotFoundError):
        config.get("loglevel", profile="other")


def test_options_rules_from_modal() -> None:
    app = modal.App("surface")
    f = app.function(gpu=False, env={"A": "1", "B": None})(lambda: None)
    assert f._options["resources"]["gpu"] is None and f._options["env"] == {"A": "1"}
    assert _options.validate_overrides({"timeout": None}, name="f") == {}
    assert _options.validate_overrides({"env": {"K": None, "J": "x"}}, name="f")["env"] == {"J": "x"}
    with pytest.raises(InvalidError, match="env="):
        app.function(env={"A": 1})(lambda: None)


def test_registered_web_endpoints_and_app_id_errors() -> None:
    app = modal.App("web-surface")

    @app.function()
    @modal.fastapi_endpoint()
    def hook() -> str:
        return "x"

    @app.function()
    def plain() -> None: ...

    @app.cls()
    class Svc:
        @modal.fastapi_endpoint()
        def page(self) -> str:
            return "p"

        @modal.method()
        def m(self) -> None: ...

    assert app.registered_web_endpoints == ["hook", "Svc.page"]
    with pytest.raises(InvalidError, match="running or deployed"):
        app.info()
    with pytest.raises(InvalidError, match="running or deployed"):
        app.stop()


def test_volume_mount_options_and_from_id_names() -> None:
    vol = modal.Volume.from_name("v")
    ro = vol.read_only()
    assert ro._read_only and not vol._read_only and ro.name == "v"
    assert not ro.with_mount_options(read_only=False)._read_only
    with pytest.raises(InvalidError, match="sub_path"):
        vol.with_mount_options(sub_path="/a")
    assert modal.Dict.from_id(dict_id="di-1")._object_id == "di-1"
    assert modal.Queue.from_id(queue_id="qu-1")._object_id == "qu-1"
    assert modal.Volume.from_id(volume_id="vo-1")._object_id == "vo-1"
    call = modal.FunctionCall.from_id("fc-1")
    assert call.object_id == "fc-1"
    with pytest.raises(InvalidError):
        modal.Function.from_id("not-an-id")


def test_function_info_from_definition() -> None:
    definition = {"tag": "f", "resources": {"cpu": 2, "memory": [1024, 2048], "gpu": {
        "type": "A10G", "count": 1, "fallbacks": [{"type": "T4", "count": 2}]}}, "timeout": 30,
        "retries": {"max_retries": 3}, "concurrency": {"max_inputs": 4, "target_inputs": None},
        "schedule": {"kind": "period", "hours": 1}, "volume_ids": {"/data": "vo-1"}, "secret_ids": ["st-1"],
        "web": {"type": "function", "method": "GET", "requires_proxy_auth": True}, "methods": {}}
    info = _introspection.function_info(definition, {"": "https://x"})
    assert (info.cpu, info.memory_mib, info.gpus) == (2.0, 2048, [("A10G", 1), ("T4", 2)])
    assert info.timeout == 30 and info.max_retries == 3 and info.schedule == "Period(hours=1)"
    assert info.concurrency_info == modal.types.FunctionInfo.ConcurrencyInfo(4, None)
    assert info.volumes["/data"].volume_id == "vo-1" and info.secrets == ["st-1"]
    assert info.web_info == modal.types.FunctionInfo.WebInfo("https://x", "GET", False)


def test_cls_from_name_defaults_fill_missing_parameters() -> None:
    definition = {"default_params": encode_params({"a": 1, "b": "x"})}
    assert decode_params(_with_declared_defaults(definition, None)) == {"a": 1, "b": "x"}
    assert decode_params(_with_declared_defaults(definition, encode_params({"b": "y"}))) == {"a": 1, "b": "y"}
    assert _with_declared_defaults({"default_params": None}, None) is None


def test_stop_fetching_inputs_outside_a_container() -> None:
    with pytest.raises(InvalidError, match="inside a skylift container"):
        experimental.stop_fetching_inputs()


def test_run_module_without_dash_m_warns(capsys: pytest.CaptureFixture[str]) -> None:
    module = import_ref("json.decoder", is_module=False)
    assert module.__name__ == "json.decoder"
    assert "deprecated" in capsys.readouterr().err
    with pytest.raises(InvalidError, match="no such file"):
        import_ref("missing_app.py", is_module=False)


def test_scheduler_placement_goes_into_the_definition() -> None:
    app = modal.App("placed")
    f = app.function(scheduler_placement=modal.SchedulerPlacement(region=["us-east", "us-west"], zone="z1"))(
        lambda: None)
    assert f._options["placement"]["scheduler_placement"] == {
        "regions": ["us-east", "us-west"], "zones": ["z1"], "instance_types": [], "spot": None}
    with pytest.raises(InvalidError, match="SchedulerPlacement"):
        app.function(scheduler_placement={"region": "x"})(lambda: None)
    with pytest.raises(InvalidError, match="spot"):
        modal.SchedulerPlacement(spot="yes")  # type: ignore[arg-type]


def test_deploy_strategy_is_rolling_only() -> None:
    with pytest.raises(InvalidError, match="rolling"):
        modal.App("s").deploy(strategy="recreate")


def test_get_web_url_has_an_aio_form() -> None:
    import asyncio

    app = modal.App("urls")
    f = app.function()(lambda: None)
    assert f.get_web_url() is None and asyncio.run(f.get_web_url.aio()) is None and f.web_url is None


def test_local_methods_work_on_any_loop() -> None:
    import asyncio

    app = modal.App("tags", tags={"a": "1"})

    async def main() -> tuple[dict[str, str], str]:
        await app.set_tags.aio({"b": "2"})
        call = await modal.FunctionCall.from_id.aio("fc-2")
        return app.get_tags(), call.object_id  # plain calls too: no hop to the SDK's loop

    assert asyncio.run(main()) == ({"a": "1", "b": "2"}, "fc-2")
